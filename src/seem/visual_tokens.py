"""Operations on :class:`~seem.modeling.decoder.VisualPromptTokens` (the visual sampler's output): joining the
objects of several prompts into one decoder pass, and changing their precision."""

from __future__ import annotations

import torch

from .modeling.decoder import VisualPromptTokens


def concat_visual_tokens(a: VisualPromptTokens | None, b: VisualPromptTokens | None) -> VisualPromptTokens | None:
    """Visual prompt tokens of the objects of ``a`` followed by those of ``b`` (token object indices shifted;
    either may be None). Used to decode several referred regions in one pass (e.g. :mod:`seem.video`)."""
    if a is None or b is None:
        return a or b
    shift = a.num_objects
    return VisualPromptTokens(
        [torch.cat([x, y]) for x, y in zip(a.tokens, b.tokens)],
        [torch.cat([x, y + shift], dim=1) for x, y in zip(a.objects, b.objects)],
        [torch.cat([x, y], dim=1) for x, y in zip(a.padding, b.padding)],
        torch.cat([a.positive_mean, b.positive_mean], dim=1),
        torch.cat([a.negative_mean, b.negative_mean], dim=1),
    )


def visual_tokens_to(tokens: VisualPromptTokens, dtype: torch.dtype) -> VisualPromptTokens:
    """Prompt tokens in ``dtype`` (a reference encoded by a predictor of another precision)."""
    if tokens.positive_mean.dtype == dtype:
        return tokens
    return VisualPromptTokens([t.to(dtype) for t in tokens.tokens], tokens.objects, tokens.padding,
                              tokens.positive_mean.to(dtype), tokens.negative_mean.to(dtype))
