"""From decoder outputs to masks: output selection and semantic / panoptic / instance inference.

Follows ``modeling/architectures/seem_model_v1.py`` (``semantic_inference``, ``panoptic_inference``,
``instance_inference``, ``evaluate_grounding``), ``modules/postprocessing.py::sem_seg_postprocess`` and
``attention_data_struct_seemv1.py::update_spatial_results`` (SEEM-REFERENCE.md §1.6-1.7).
All functions are pure and work on one image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from seem.banded import left_product, right_product
from seem.modeling.attention_mask import QueryGroup


def upsample_to_input(mask_logits: Tensor, padded_size: tuple[int, int], mode: str = "bilinear") -> Tensor:
    """``(..., h, w)`` logits at 1/4 resolution -> ``(..., H_pad, W_pad)`` (``align_corners=False``)."""
    shape = mask_logits.shape
    x = mask_logits.reshape(1, -1, *shape[-2:])
    x = F.interpolate(x, size=padded_size, mode=mode, align_corners=False)
    return x.reshape(*shape[:-2], *padded_size)


def sem_seg_postprocess(result: Tensor, image_size: tuple[int, int], output_size: tuple[int, int]) -> Tensor:
    """Crop the padding and resize to the output size (official ``sem_seg_postprocess``).

    Args:
        result: ``(C, H_pad, W_pad)`` per-pixel values at the padded model input resolution.
        image_size: ``(h, w)`` of the resized image before padding.
        output_size: ``(H, W)`` of the original image.

    Returns:
        ``(C, H, W)``, bicubic with antialiasing, ``align_corners=False``.
    """
    x = result[:, : image_size[0], : image_size[1]][None]
    if tuple(x.shape[-2:]) == tuple(output_size):
        return x[0]
    return F.interpolate(x, size=output_size, mode="bicubic", align_corners=False, antialias=True)[0]


def semantic_inference(class_logits: Tensor, mask_logits: Tensor) -> Tensor:
    """``(Q, C+1)``, ``(Q, H, W)`` -> ``(C, H, W)`` = softmax (no background column) x sigmoid masks."""
    probs = F.softmax(class_logits, dim=-1)[..., :-1]
    return torch.einsum("qc,qhw->chw", probs, mask_logits.sigmoid())


@dataclass(frozen=True)
class PanopticSegments:
    """``segmentation`` ``(H, W)`` int32 (0 = void); ``segments`` dicts with id, label_id, isthing, score, query."""

    segmentation: Tensor
    segments: list[dict]


def panoptic_inference(
    class_logits: Tensor,
    mask_logits: Tensor,
    is_thing: list[bool],
    object_mask_threshold: float,
    overlap_threshold: float,
) -> PanopticSegments:
    """Merge query masks into non-overlapping segments (official ``panoptic_inference``).

    Args:
        class_logits: ``(Q, C+1)``, last column = background / no object.
        mask_logits: ``(Q, H, W)`` at the output resolution.
        is_thing: length C; stuff segments of one class are merged.
        object_mask_threshold: keep queries whose top class probability is above this.
        overlap_threshold: drop a segment whose visible area / own area is below this.
    """
    num_classes = class_logits.shape[-1] - 1
    scores, labels = F.softmax(class_logits, dim=-1).max(-1)
    masks = mask_logits.sigmoid()
    keep = labels.ne(num_classes) & (scores > object_mask_threshold)
    query_ids = keep.nonzero().flatten()
    cur_scores, cur_classes, cur_masks = scores[keep], labels[keep], masks[keep]
    h, w = masks.shape[-2:]
    panoptic = torch.zeros((h, w), dtype=torch.int32, device=masks.device)
    segments: list[dict] = []
    if cur_masks.shape[0] == 0:
        return PanopticSegments(panoptic, segments)
    mask_ids = (cur_scores.view(-1, 1, 1) * cur_masks).argmax(0)
    stuff_ids: dict[int, int] = {}
    current = 0
    for k in range(cur_classes.shape[0]):
        label = int(cur_classes[k])
        isthing = bool(is_thing[label])
        mask_area = int((mask_ids == k).sum())
        original_area = int((cur_masks[k] >= 0.5).sum())
        mask = (mask_ids == k) & (cur_masks[k] >= 0.5)
        if mask_area > 0 and original_area > 0 and int(mask.sum()) > 0:
            if mask_area / original_area < overlap_threshold:
                continue
            if not isthing:
                if label in stuff_ids:
                    panoptic[mask] = stuff_ids[label]
                    continue
                stuff_ids[label] = current + 1
            current += 1
            panoptic[mask] = current
            segments.append(
                {"id": current, "label_id": label, "isthing": isthing, "score": float(cur_scores[k]), "query": int(query_ids[k])}
            )
    return PanopticSegments(panoptic, segments)


@dataclass(frozen=True)
class Instances:
    """``masks`` ``(N, H, W)`` bool, ``scores`` ``(N,)``, ``label_ids`` ``(N,)``, ``queries`` ``(N,)``."""

    masks: Tensor
    scores: Tensor
    label_ids: Tensor
    queries: Tensor


def instance_inference(
    class_logits: Tensor, mask_logits: Tensor, topk: int, thing_only: list[bool] | None = None
) -> Instances:
    """Top-k (query, class) pairs (official ``instance_inference``).

    ``score = p(class) * mean(sigmoid(mask) inside mask > 0)``. With ``thing_only`` (a length-C list),
    only thing classes are kept, as the official code does when panoptic output is also on.
    """
    num_queries, num_classes = class_logits.shape[0], class_logits.shape[1] - 1
    probs = F.softmax(class_logits, dim=-1)[:, :-1]
    labels = torch.arange(num_classes, device=class_logits.device).repeat(num_queries)
    scores, idx = probs.flatten().topk(min(topk, probs.numel()), sorted=False)
    label_ids = labels[idx]
    queries = idx // num_classes
    masks = mask_logits[queries]
    if thing_only is not None:
        keep = torch.tensor([bool(thing_only[int(i)]) for i in label_ids], dtype=torch.bool, device=scores.device)
        scores, label_ids, masks, queries = scores[keep], label_ids[keep], masks[keep], queries[keep]
    binary = (masks > 0).float()
    mask_scores = (masks.sigmoid().flatten(1) * binary.flatten(1)).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    return Instances(binary.bool(), scores * mask_scores, label_ids, queries)


def spatial_query_objects(num_spatial_queries: int, num_objects: int, device: torch.device | None = None) -> Tensor:
    """``(Ns,)`` object index of each spatial query: the decoder lays them out object by object, in equal
    blocks (v1: ``query_number`` copies per object; v0: all object queries per object)."""
    if num_objects == 0 or num_spatial_queries % num_objects:
        raise ValueError(f"{num_spatial_queries} spatial queries cannot be split among {num_objects} objects")
    return torch.arange(num_objects, device=device).repeat_interleave(num_spatial_queries // num_objects)


def select_visual_queries(output) -> Tensor:
    """``(K,)`` query-axis index of the chosen spatial query of each visual object of a
    :class:`~seem.modeling.decoder.DecoderOutput` (last prediction set; :func:`select_spatial`)."""
    s, e = output.ranges[QueryGroup.SPATIAL]
    mask_embed = output.last.mask_embed[0, s:e]
    q_obj = spatial_query_objects(e - s, output.visual.num_objects, mask_embed.device)
    return s + select_spatial(mask_embed.float(), output.visual.positive_mean[0].float(), q_obj)


def select_spatial(mask_embed: Tensor, positive_mean: Tensor, query_object: Tensor) -> Tensor:
    """Pick one spatial query per visual prompt by mask-embedding match (paper Eq. 5, inference).

    Args:
        mask_embed: ``(Ns, Dm)`` mask embeddings of the spatial queries.
        positive_mean: ``(K, Dm)`` mean positive prompt feature of each object.
        query_object: ``(Ns,)`` which object each spatial query belongs to.

    Returns:
        ``(K,)`` int64 index into the spatial queries (official ``update_spatial_results``).
    """
    logits = mask_embed @ positive_mean.t()
    other = query_object[:, None] != torch.arange(positive_mean.shape[0], device=logits.device)[None, :]
    logits = logits.masked_fill(other.to(logits.device), float("-inf"))
    return logits.max(dim=0).indices


def grounding_similarity(query_class_embed: Tensor, sentence_embed: Tensor, logit_scale: Tensor, max_scale: float) -> Tensor:
    """``(Q, D)`` x ``(S, D)`` -> ``(Q, S)`` = min(exp(logit_scale), max) * cos (official ``vl_similarity``)."""
    v = query_class_embed / (query_class_embed.norm(dim=-1, keepdim=True) + 1e-7)
    t = sentence_embed / (sentence_embed.norm(dim=-1, keepdim=True) + 1e-7)
    return torch.clamp(logit_scale.exp(), max=max_scale) * v @ t.t()


def select_grounding(query_class_embed: Tensor, sentence_embed: Tensor, logit_scale: Tensor, max_scale: float = 100.0):
    """Pick one grounding query per sentence by class-embedding match (paper Eq. 6, inference).

    Returns ``(similarity (Q, S), matched (S,) int64)``.
    """
    sim = grounding_similarity(query_class_embed, sentence_embed, logit_scale, max_scale)
    return sim, sim.max(dim=0).indices


def keep_prompted_components(logits: Tensor, positive: Tensor, cells: np.ndarray | None = None) -> Tensor:
    """Turn off the mask regions that no positive visual prompt touches (``InferenceConfig.prompt_connected_masks``).

    A click on one person can light up every person in the photo, because a mask is ``mask_embed . features``:
    what the query looks for, found anywhere. The regions of ``logits > 0`` (8-connected) that meet a positive
    prompt region (a click's square, a stroke, a filled box or polygon, a mask; grown by one cell) are kept,
    the others get ``-|logit|``, so the returned logits (the next round's memory too) and the masks made from
    them agree. An object whose positive prompt meets no region of its mask is returned unchanged. Not in the
    official code (off for the official variants). Connected components by ``scipy.ndimage.label`` (a
    morphological reconstruction by repeated 3x3 dilation gives the same result, ~20x slower).

    Args:
        logits: ``(K, h, w)`` float mask logits at 1/4 of the padded input (:class:`~seem.outputs.Prediction`'s
            ``logits_lowres`` frame).
        positive: ``(K, 4h, 4w)`` bool positive prompt regions in the padded input frame
            (:class:`seem.prompts.regions.RegionPrompts`).
        cells: :func:`prompt_cells` of ``positive`` when the caller has it (computed otherwise).

    Returns:
        ``(K, h, w)`` logits, same dtype.

    Raises:
        ValueError: ``positive`` is not ``4x`` the size of ``logits``, or the object counts differ.
    """
    k, h, w = logits.shape
    if positive.shape != (k, 4 * h, 4 * w):
        raise ValueError(f"positive prompt regions {tuple(positive.shape)} do not fit mask logits {(k, h, w)} "
                         "(expected (K, 4h, 4w))")
    return _keep_touched_components(logits, prompt_cells(positive) if cells is None else cells)


def _keep_touched_components(logits: Tensor, cells: np.ndarray, rows_per_object: int = 1) -> Tensor:
    """:func:`keep_prompted_components` from the ``(K, h, w)`` bool prompt cells (:func:`prompt_cells`) of ``K``
    objects, each with ``rows_per_object`` consecutive rows of ``logits``."""
    return _keep_touched(logits, cells, rows_per_object)[0]


def _keep_touched(logits: Tensor, cells: np.ndarray, rows_per_object: int = 1) -> tuple[Tensor, np.ndarray]:
    """:func:`_keep_touched_components` and the returned logits' ``> 0`` cells as a bool array. NumPy works the
    maps (comparisons and selections on these ~10^5-cell maps run several times faster there than in torch)."""
    from scipy import ndimage

    values = logits.detach().float().cpu().numpy()
    inside: np.ndarray = values > 0
    grown = square_dilation(cells, 1)
    touched = (grown if rows_per_object == 1 else np.repeat(grown, rows_per_object, axis=0)) & inside
    rows = touched.any(axis=(1, 2))
    if not rows.any():
        return logits, inside
    # every row's 8-connected regions in one labelling (the structure does not connect neighbouring rows)
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True
    labels, n = ndimage.label(inside & rows[:, None, None], structure=structure)
    keep = np.zeros(n + 1, bool)
    keep[labels[touched]] = True
    keep[0] = True
    drop = ~keep.take(labels)  # regions of rows with a touched region that no prompt touches
    if not drop.any():
        return logits, inside
    kept = np.where(drop, -np.abs(values), values)
    return torch.from_numpy(kept).to(logits.device, logits.dtype), inside & ~drop


def square_dilation(cells: np.ndarray, radius: int) -> np.ndarray:
    """``(K, h, w)`` bool -> each map dilated by a ``(2 radius + 1)`` square (nothing outside the map), as
    ``scipy.ndimage.maximum_filter(cells, (1, 2r+1, 2r+1), mode="constant")`` gives it, by shifted ORs (several
    times faster on these small radii)."""
    out = cells.copy()
    for s in range(1, radius + 1):
        out[:, s:] |= cells[:, :-s]
        out[:, :-s] |= cells[:, s:]
    rows = out.copy()
    for s in range(1, radius + 1):
        out[:, :, s:] |= rows[:, :, :-s]
        out[:, :, :-s] |= rows[:, :, s:]
    return out


def near_mask_support(logits: Tensor, positive: Tensor, cells: int = 2, prompted: np.ndarray | None = None) -> Tensor:
    """``(K, h, w)`` logits and ``(K, 4h, 4w)`` bool positive prompt regions -> ``(K, h, w)`` float: ``+1`` within
    ``cells`` low-resolution cells (8-neighbourhood) of a positive logit or of a positive prompt, ``-1``
    elsewhere. Resampled bilinearly to the original size and thresholded at 0 it bounds a mask made by
    *bicubic* upsampling: after :func:`keep_prompted_components` negates whole regions, bicubic's negative
    lobes would otherwise ring up specks of positive logit around them, far from the kept region (a strongly
    negative cell next to a weakly negative one). Near the prompts everything stays (a small object can be
    positive only between cells). ``prompted``: :func:`prompt_cells` of ``positive`` when the caller has it."""
    return _near_support(logits, prompt_cells(positive) if prompted is None else prompted, cells)


def _near_support(logits: Tensor, prompted: np.ndarray, cells: int = 2, inside: np.ndarray | None = None) -> Tensor:
    """:func:`near_mask_support` from the ``(K, h, w)`` bool prompt cells (:func:`prompt_cells`); ``inside``: the
    ``logits > 0`` cells when the caller has them."""
    seeds = (logits.detach().float().cpu().numpy() > 0 if inside is None else inside) | prompted
    near = square_dilation(seeds, cells).astype(np.float32) * 2 - 1
    return torch.from_numpy(near).to(logits.device)


def prompt_cells(positive: Tensor) -> np.ndarray:
    """``(K, 4h, 4w)`` bool prompt regions (padded input frame) -> ``(K, h, w)`` bool: the low-res cells (4x4 input
    pixels each) that hold any prompt pixel."""
    k, hh, ww = positive.shape
    pixels = positive.cpu().numpy()
    flat = np.flatnonzero(pixels)
    if flat.size * 16 < pixels.size:  # sparse (clicks, strokes): mark the cells of the set pixels, ~10x faster
        cells = np.zeros((k, hh // 4, ww // 4), dtype=bool)
        obj, pixel = np.divmod(flat, hh * ww)
        cells[obj, pixel // ww // 4, pixel % ww // 4] = True
        return cells
    rows = pixels.reshape(k, hh // 4, 4, ww).any(axis=2)
    return np.asarray(rows.reshape(k, hh // 4, ww // 4, 4).any(axis=3))


def prompt_connected(logits: Tensor, positive: Tensor, rows_per_object: int = 1) -> tuple[Tensor, Tensor]:
    """``InferenceConfig.prompt_connected_masks`` for one prompt round: ``(K r, h, w)`` low-res logits of the visual
    objects (``r`` = ``rows_per_object`` candidate rows per object; this image's ``K' = len(positive)`` objects
    first, a reference image's after them, left as they are) and their ``(K', 4h, 4w)`` positive prompt regions
    -> (the logits with unprompted regions negated, as the memory of the next round; the ``(K r, h, w)`` +-1
    support field of :func:`near_mask_support`, +1 everywhere for the reference's objects, for
    :func:`masks_with_scores`)."""
    k = positive.shape[0] * rows_per_object
    _, h, w = logits.shape
    if positive.shape[1:] != (4 * h, 4 * w) or logits.shape[0] < k:
        raise ValueError(f"positive prompt regions {tuple(positive.shape)} do not fit mask logits {tuple(logits.shape)} "
                         f"with {rows_per_object} rows per object")
    cells = prompt_cells(positive)  # of each object, repeated per candidate row only at low resolution
    touched, inside = _keep_touched(logits[:k], cells, rows_per_object)
    rows = cells if rows_per_object == 1 else np.repeat(cells, rows_per_object, axis=0)
    support = _near_support(touched, rows, inside=inside)
    if k == logits.shape[0]:  # no reference objects: no copies
        return touched, support
    return torch.cat([touched, logits[k:]]), torch.cat([support, torch.ones_like(logits[k:], dtype=torch.float32)])


def masks_with_scores(frame, logits_lowres: Tensor, mode: str, antialias: bool,
                      support: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(K, H_pad/4, W_pad/4)`` mask logits -> ``(K, H, W)`` bool masks at the original size (``logits > 0``) and
    ``(K,)`` their mean probability inside the mask (``ImageFrame.logits_to_original`` with ``mode`` /
    ``antialias``; ``frame``: the image's :class:`seem.transforms.ImageFrame`).

    With ``support`` (the ``(K, h, w)`` +-1 field of :func:`prompt_connected` or
    :func:`seem.box_bounds.box_bounded`), a mask is also limited to where that field, resampled bilinearly to
    the original size, is positive; only the rows and columns that the
    field's +1 cells reach are computed (outside them the resampled field is exactly -1: interpolation
    weights sum to 1), so a click on a small object upsamples a small box.
    """
    if support is None:
        return _masks_and_scores(frame.logits_to_original(logits_lowres, mode=mode, antialias=antialias))
    k, h, w = logits_lowres.shape
    rows, cols = frame.resampling_matrices((h, w), mode, antialias)
    rows_s, cols_s = frame.resampling_matrices((h, w), "bilinear", False)
    masks = torch.zeros(k, *frame.original_size, dtype=torch.bool)
    scores = torch.zeros(k)
    for i in range(k):
        cells = support[i] > 0
        ry, rx = _reach(rows_s, cells.any(1)), _reach(cols_s.t(), cells.any(0))
        if ry is None or rx is None:
            continue
        # only the low-res rows / columns these outputs weigh (resampling matrices are banded)
        by, bx = _band(rows[ry]), _band(cols[:, rx].t())
        bys, bxs = _band(rows_s[ry]), _band(cols_s[:, rx].t())
        logit = right_product(left_product(rows[ry, by], logits_lowres[i, by, bx].float().cpu()), cols[bx, rx])
        near = right_product(left_product(rows_s[ry, bys], support[i, bys, bxs].float().cpu()), cols_s[bxs, rx])
        # one field whose sign is the mask and which equals the logit inside it (near > 1e-30 there)
        mask, score = _masks_and_scores(torch.minimum(logit, near * 1e30)[None])
        masks[i, ry, rx], scores[i] = mask[0], score[0]
    return masks.to(logits_lowres.device), scores.to(logits_lowres.device)


def _masks_and_scores(logits: Tensor) -> tuple[Tensor, Tensor]:
    """``(K, H, W)`` logits -> (``logits > 0``, the mean sigmoid over it ``(K,)``): inside the mask the sigmoid is
    above 1/2, so its sum is that of ``clamp(sigmoid - 1/2, 0)`` plus half the pixel count (no bool-float
    products, several times slower on CPU)."""
    masks = logits > 0
    if masks.device.type == "cpu" and masks.numel():  # numpy counts in place (a bool sum copies to int64: 7x slower)
        flat = masks.reshape(masks.shape[0], -1).numpy()
        count = torch.tensor([np.count_nonzero(row) for row in flat], dtype=torch.int64)
    else:
        count = masks.flatten(1).sum(1)
    total = logits.sigmoid().sub_(0.5).clamp_(min=0).flatten(1).sum(1) + 0.5 * count
    return masks, total / (count + 1e-6)


def _band(weights: Tensor) -> slice:
    """The slice of low-res indices (columns of ``weights``, ``(n_out, n_low)``) that any output row weighs."""
    used = torch.nonzero((weights != 0).any(0)).flatten()
    return slice(int(used[0]), int(used[-1]) + 1) if used.numel() else slice(0, 0)


def _reach(matrix: Tensor, cells: Tensor) -> slice | None:
    """The slice of output indices (rows of ``matrix``, ``(n_out, n_low)``) with a non-zero weight on any
    low-res index in ``cells`` (``(n_low,)`` bool); ``None`` when none is set."""
    idx = torch.nonzero(cells).flatten()
    if idx.numel() == 0:
        return None
    hit = torch.nonzero((matrix[:, int(idx[0]) : int(idx[-1]) + 1] != 0).any(1)).flatten()
    return slice(int(hit[0]), int(hit[-1]) + 1) if hit.numel() else None
