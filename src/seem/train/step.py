"""One training step on one image: prompts, simulated interaction rounds, the supervised pass, the losses.

Follows ``seem_model_v1.py::forward_seg`` (SEEM-REFERENCE.md §2.4): visual prompts are drawn for a few
ground-truth segments (point / scribble / polygon / circle / box, official ``ShapeSampler``), then
``r ~ U{0..max_rounds}`` interaction rounds run *without gradient*, each adding a click at the centre of
the larger error region (``clicker.next_click``) to every object whose IoU is still below 0.925; the final
pass, with gradient, decodes the object queries, the referring expressions (grounding queries) and the
visual prompts with the last round's mask as the memory prompt, all at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..modeling.seem import ImageFeatures, Seem
from ..modeling.visual_sampler import RandomSampler
from ..postprocess import select_visual_queries
from .clicker import click_square, iou, next_click
from .config import TrainConfig
from .criterion import ImageTargets, SeemCriterion

STOP_IOU = 0.925  # official: objects at this IoU get no more clicks


@dataclass
class TrainSample:
    """What a step needs from one image (a generated scene or a dataset record)."""

    image: np.ndarray  # (H, W, 3) uint8
    masks: np.ndarray  # (N, H, W) bool, panoptic segments
    labels: np.ndarray  # (N,) int64 indices into the step vocabulary
    expressions: list[tuple[str, int]]  # referring expressions -> segment index


def image_loss(model: Seem, criterion: SeemCriterion, feats: ImageFeatures, sample: TrainSample,
               class_logits_fn, config: TrainConfig, rng: np.random.Generator, generator: torch.Generator):
    """Losses (a dict of weighted scalars with a ``"loss"`` total) for one image of the batch."""
    from ..data.prompts_sim import sample_prompt

    device = feats.mask_features.device
    hp, wp = feats.padded_size
    h, w = sample.masks.shape[1:]
    sampler = RandomSampler(int(rng.integers(2**31)))
    n = len(sample.masks)
    k = min(config.max_objects, n)
    chosen = rng.choice(n, size=k, replace=False) if k else np.zeros(0, dtype=int)
    pos = np.zeros((k, hp, wp), dtype=bool)
    neg = np.zeros((k, hp, wp), dtype=bool)
    for j, seg in enumerate(chosen):
        pos[j, :h, :w] = sample_prompt(sample.masks[seg], rng)
    memory = None
    if k:
        rounds = int(rng.integers(0, config.max_rounds + 1))
        gt = np.zeros((k, hp, wp), dtype=bool)
        gt[:, :h, :w] = sample.masks[chosen]
        for _ in range(rounds):
            with torch.no_grad():
                visual = model.encode_visual_prompt(feats, torch.from_numpy(pos).to(device), torch.from_numpy(neg).to(device), sampler)
                out = model.decode(feats, visual=visual, memory_mask=memory, sampler=sampler)
                memory = out.last.masks[0, select_visual_queries(out)][None].detach()
                pred = F.interpolate(memory, size=(hp, wp), mode="bilinear", align_corners=False)[0] > 0
            pred = pred.cpu().numpy()
            for j in range(k):
                if iou(gt[j], pred[j]) >= STOP_IOU:
                    continue
                click = next_click(gt[j], pred[j], pos[j] | neg[j])
                if click is not None:
                    (pos if click.positive else neg)[j] |= click_square((hp, wp), click)
    visual = None
    if k:
        visual = model.encode_visual_prompt(feats, torch.from_numpy(pos).to(device), torch.from_numpy(neg).to(device), sampler)
    text = None
    grounding_masks = None
    if sample.expressions and config.max_sentences:
        m = min(config.max_sentences, len(sample.expressions))
        picks = rng.choice(len(sample.expressions), size=m, replace=False)
        phrases = [sample.expressions[i] for i in picks]
        text = model.encode_text([p for p, _ in phrases])
        grounding_masks = np.zeros((m, hp, wp), dtype=bool)
        grounding_masks[:, :h, :w] = sample.masks[[i for _, i in phrases]]
        grounding_masks = torch.from_numpy(grounding_masks).to(device)
    out = model.decode(feats, visual=visual, text=text, memory_mask=memory, sampler=sampler)
    padded = np.zeros((n, hp, wp), dtype=bool)  # GT in the padded model frame, like the predictions
    padded[:, :h, :w] = sample.masks
    targets = ImageTargets(
        labels=torch.from_numpy(sample.labels).to(device),
        masks=torch.from_numpy(padded).to(device),
        spatial_masks=torch.from_numpy(padded[chosen]).to(device) if k else None,
        grounding_masks=grounding_masks,
        sentence_embeddings=None if text is None else text.sentence_embeddings,
    )
    return criterion(out, class_logits_fn, targets, model.text_encoder.logit_scale, generator=generator)
