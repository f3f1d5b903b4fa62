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

from seem.modeling.seem import ImageFeatures, Seem
from seem.modeling.visual_sampler import RandomSampler
from seem.postprocess import select_visual_queries
from seem.train.clicker import Click, click_square, iou, next_click
from seem.train.config import TrainConfig
from seem.train.criterion import ImageTargets, SeemCriterion

STOP_IOU = 0.925  # official: objects at this IoU get no more clicks


@dataclass
class TrainSample:
    """What a step needs from one image (a generated scene or a dataset record)."""

    image: np.ndarray  # (H, W, 3) uint8
    masks: np.ndarray  # (N, H, W) bool, panoptic segments
    labels: np.ndarray  # (N,) int64 indices into the step vocabulary
    expressions: list[tuple[str, int]]  # referring expressions -> segment index
    generic: np.ndarray | None = None  # (N,) bool: object-query targets (None: every segment)
    promptable: np.ndarray | None = None  # (N,) bool: visual-prompt targets (None: every segment)
    vocabulary: tuple[str, ...] = ()  # the class names ``labels`` index (the image's own label space)

    def generic_index(self) -> np.ndarray:
        return np.arange(len(self.masks)) if self.generic is None else np.flatnonzero(self.generic)

    def prompt_index(self) -> np.ndarray:
        n = len(self.masks)
        keep = np.ones(n, dtype=bool) if self.promptable is None else self.promptable.astype(bool).copy()
        keep &= self.masks.any(axis=(1, 2)) if n else keep
        return np.flatnonzero(keep)


def first_click(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(H, W)`` bool: one 3x3 click inside ``mask``, drawn uniformly among pixels at least a random
    fraction (0.3..1) of the maximal distance from the border (the evaluation's first click is the maximum)."""
    from scipy.ndimage import distance_transform_edt

    dist = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    ys, xs = np.nonzero(dist >= rng.uniform(0.3, 1.0) * dist.max())
    j = int(rng.integers(len(ys)))
    return click_square(mask.shape, Click(int(ys[j]), int(xs[j]), True)) & mask


def initial_prompt(mask: np.ndarray, config: TrainConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(positive, negative)`` regions of an object's first prompt: one click (``single_click_prob``) or one of
    the official shapes; a box may come with 1..2 negative clicks inside it and outside the object."""
    from seem.data.prompts_sim import PROMPT_KINDS, PROMPT_SAMPLERS

    negative = np.zeros_like(mask)
    if rng.random() < config.single_click_prob:
        return first_click(mask, rng), negative
    kind = PROMPT_KINDS[int(rng.integers(len(PROMPT_KINDS)))]
    positive = PROMPT_SAMPLERS[kind](mask, rng)
    if kind == "box" and rng.random() < config.box_negative_prob:
        ys, xs = np.nonzero(positive & ~mask)
        for j in rng.choice(len(ys), size=min(len(ys), int(rng.integers(1, 3))), replace=False):
            negative |= click_square(mask.shape, Click(int(ys[j]), int(xs[j]), False))
        negative &= ~mask
    return positive, negative


def prompt_weights(masks: np.ndarray, small_object_bias: float) -> np.ndarray | None:
    """Draw probabilities ``(N,)`` of the prompted objects among ``masks`` ``(N, H, W)``: ``area ** -bias``
    normalised (``None``, i.e. uniform, for bias 0)."""
    if not small_object_bias or len(masks) == 0:
        return None
    w = np.maximum(masks.sum(axis=(1, 2)), 1).astype(np.float64) ** -float(small_object_bias)
    return w / w.sum()


def image_loss(model: Seem, criterion: SeemCriterion, feats: ImageFeatures, sample: TrainSample,
               class_logits_fn, config: TrainConfig, rng: np.random.Generator, generator: torch.Generator):
    """Losses (a dict of weighted scalars with a ``"loss"`` total) for one image of the batch."""
    device = feats.mask_features.device
    hp, wp = feats.padded_size
    h, w = sample.masks.shape[1:]
    sampler = RandomSampler(int(rng.integers(2**31)))
    eligible = sample.prompt_index()
    k = min(config.max_objects, len(eligible))
    # (the bias check first: indexing the masks copies them, which the uniform draw does not need)
    draw = prompt_weights(sample.masks[eligible], config.small_object_bias) if config.small_object_bias else None
    chosen = rng.choice(eligible, size=k, replace=False, p=draw) if k else np.zeros(0, dtype=int)
    pos = np.zeros((k, hp, wp), dtype=bool)
    neg = np.zeros((k, hp, wp), dtype=bool)
    for j, seg in enumerate(chosen):
        pos[j, :h, :w], neg[j, :h, :w] = initial_prompt(sample.masks[seg], config, rng)
    memory = None
    if k:
        rounds = int(rng.integers(0, config.max_rounds + 1))
        gt = np.zeros((k, hp, wp), dtype=bool)
        gt[:, :h, :w] = sample.masks[chosen]
        for _ in range(rounds):
            with torch.no_grad():
                round_visual = model.encode_visual_prompt(feats, torch.from_numpy(pos).to(device), torch.from_numpy(neg).to(device), sampler)
                out = model.decode(feats, visual=round_visual, memory_mask=memory, sampler=sampler)
                memory = out.last.masks[0, select_visual_queries(out)][None].detach()
                pred_mask = F.interpolate(memory, size=(hp, wp), mode="bilinear", align_corners=False)[0] > 0
            pred = pred_mask.cpu().numpy()
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
    grounding_masks: torch.Tensor | None = None
    if sample.expressions and config.max_sentences:
        m = min(config.max_sentences, len(sample.expressions))
        picks = rng.choice(len(sample.expressions), size=m, replace=False)
        phrases = [sample.expressions[i] for i in picks]
        text = model.encode_text([p for p, _ in phrases])
        grounding_np = np.zeros((m, hp, wp), dtype=bool)
        grounding_np[:, :h, :w] = sample.masks[[i for _, i in phrases]]
        grounding_masks = torch.from_numpy(grounding_np).to(device)
    out = model.decode(feats, visual=visual, text=text, memory_mask=memory, sampler=sampler)
    padded = np.zeros((len(sample.masks), hp, wp), dtype=bool)  # GT in the padded model frame
    padded[:, :h, :w] = sample.masks
    generic = sample.generic_index()
    targets = ImageTargets(
        labels=torch.from_numpy(sample.labels[generic]).to(device),
        masks=torch.from_numpy(padded[generic]).to(device),
        spatial_masks=torch.from_numpy(padded[chosen]).to(device) if k else None,
        grounding_masks=grounding_masks,
        sentence_embeddings=None if text is None else text.sentence_embeddings,
        generic=bool(sample.vocabulary) or sample.generic is None,
    )
    return criterion(out, class_logits_fn, targets, model.text_encoder.logit_scale, generator=generator)
