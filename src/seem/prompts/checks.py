"""Validation of prompt values, each :class:`~seem.errors.PromptError` naming the field it rejects.

Field names follow the caller's vocabulary (``points``, ``boxes[1]``, a server request's ``pos_points``),
and an element is named by its index path: ``points[2]`` is the third click of a one-object ``(N, 2)``
array, ``points[1][2]`` the third click of object 1 in a ``(K, N, 2)`` array, ``box[1]`` the ``(x1, y1)``
corner of a box. Coordinates are ``(x, y)`` pixels of the original image (x right, y down); a point may
lie on the far border (``0 <= x <= width``, ``0 <= y <= height``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seem.errors import PromptError, PromptTypeError


def numbers(value, field: str, shape_hint: str) -> np.ndarray:
    """``value`` as a non-empty float64 array.

    Raises:
        PromptError: not numbers (or ragged), or empty.
    """
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise PromptError(f"{field} must be numbers shaped {shape_hint}, got {value!r:.80}") from None
    if a.size == 0:
        raise PromptError(f"{field} is empty; expected {shape_hint}")
    return a


def finite(a: np.ndarray, field: str) -> np.ndarray:
    """``a`` itself; PromptError when a coordinate is NaN or infinite."""
    if not np.all(np.isfinite(a)):
        raise PromptError(f"{field} contain non-finite coordinates")
    return a


def check_inside(points_xy, image_size: tuple[int, int], field: str) -> None:
    """PromptError naming ``field[i]`` (``field[k][i]`` for ``(K, N, 2)``) for the first point outside the image.

    Args:
        points_xy: ``(..., 2)`` float ``(x, y)`` pixels of the original image (a list of pairs is fine).
        image_size: ``(H, W)`` of the original image.
    """
    h, w = image_size
    xy = np.asarray(points_xy, dtype=np.float64)
    if xy.size == 0:
        return
    x, y = xy[..., 0], xy[..., 1]
    bad = ~((x >= 0) & (x <= w) & (y >= 0) & (y <= h))  # NaN counts as outside
    if np.any(bad):
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        x, y = xy[index]
        path = "".join(f"[{i}]" for i in index)
        raise PromptError(f"{field}{path}: point ({x:g}, {y:g}) is outside the image (width {w}, height {h}); "
                          "coordinates are (x, y) pixels of the original image")


def check_box_order(box: Sequence[float], field: str) -> None:
    """PromptError unless ``box`` = ``[x0, y0, x1, y1]`` has a positive width and height."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x0 < x1 and y0 < y1):
        raise PromptError(f"{field}: expected [x0, y0, x1, y1] with x0 < x1 and y0 < y1, got "
                          f"{[float(v) for v in box]} (XYXY boxes need x1 > x0 and y1 > y0)")


def check_box(box: Sequence[float], image_size: tuple[int, int], field: str) -> None:
    """Both corners inside the ``(H, W)`` image (``field[0]`` / ``field[1]``), then a positive width and height."""
    x0, y0, x1, y1 = box
    check_inside([(x0, y0), (x1, y1)], image_size, field)
    check_box_order(box, field)


def texts(text) -> tuple[str, ...] | None:
    """``str`` or a sequence of ``str`` -> tuple (``None`` stays ``None``).

    Raises:
        PromptError: anything else, an empty list or a blank phrase.
    """
    if text is None:
        return None
    items = [text] if isinstance(text, str) else text
    if isinstance(items, bytes) or not isinstance(items, Sequence) or not all(isinstance(t, str) for t in items):
        raise PromptError(f"text must be a string or a list of strings, got {text!r:.80}")
    if any(not t.strip() for t in items) or not items:
        raise PromptError("a text prompt is empty")
    return tuple(items)


def flag(value, field: str) -> bool:
    """``value`` as a Python ``bool``; PromptTypeError for anything else (``1``, ``"yes"``, ``None``)."""
    if not isinstance(value, (bool, np.bool_)):
        raise PromptTypeError(f"{field} must be True or False, got {value!r:.60} ({type(value).__name__})")
    return bool(value)


def point_labels(labels, shape: tuple[int, int]) -> np.ndarray:
    """``(K, N)`` int64 labels (all 1 for ``None``); PromptError unless one 0/1 per point."""
    if labels is None:
        return np.ones(shape, dtype=np.int64)
    try:
        a = np.asarray(labels, dtype=np.float64)
    except (TypeError, ValueError):
        a = None
    if a is None or a.size != shape[0] * shape[1] or not np.isin(a, (0, 1)).all():
        raise PromptError(f"point_labels must hold one 1 (positive) or 0 (negative) per point; got {labels!r}")
    return a.reshape(shape).astype(np.int64)


def region_list(value, field: str) -> tuple[np.ndarray, ...]:
    """Masks given as ``(H, W)``, ``(K, H, W)`` or a sequence of ``(H, W)`` -> tuple of arrays (checked later
    against the image by :func:`region_masks`).

    Raises:
        PromptError: not arrays, an empty sequence, or an item that is not 2-D (naming ``field[i]``).
    """
    try:
        if isinstance(value, np.ndarray) and value.ndim == 2:
            items = [value]
        else:
            items = [np.asarray(m) for m in value]
    except TypeError:
        raise PromptError(f"{field} must be (H, W) arrays, got {type(value).__name__}") from None
    if not items:
        raise PromptError(f"no {field} given (empty list)")
    for i, m in enumerate(items):
        if m.ndim != 2:
            raise PromptError(f"{field}[{i}]: expected an (H, W) array, got shape {m.shape}")
    return tuple(items)


def region_masks(masks: Sequence[np.ndarray], image_size: tuple[int, int], field: str) -> np.ndarray:
    """``(K, H, W)`` bool masks of the ``(H, W)`` image, one per object.

    Raises:
        PromptError naming ``field[i]``: another size, a non-numeric dtype, NaN/inf values, no pixel set.
    """
    out = []
    for i, m in enumerate(masks):
        if m.shape != tuple(image_size):
            raise PromptError(f"{field}[{i}]: size {m.shape} differs from the image {tuple(image_size)} (H, W)")
        if m.dtype.kind not in "biuf":
            raise PromptError(f"{field}[{i}]: must be a boolean or numeric array, got dtype {m.dtype}")
        if m.dtype.kind == "f" and not np.isfinite(m).all():
            raise PromptError(f"{field}[{i}]: contains NaN or infinite values")
        m = m.astype(bool)
        if not m.any():
            raise PromptError(f"{field}[{i}]: the mask is empty (no pixel set)")
        out.append(m)
    return np.stack(out)


def memory_logits(memory, num_objects: int | None, expect: tuple[int, int]):
    """The previous round's mask logits for the memory prompt: ``memory`` is a
    :class:`~seem.structures.Prediction` (its ``logits_lowres``) or an ``(K, h, w)`` float tensor / array; returns
    it as a float tensor after checking it against ``num_objects`` visual objects (None: no visual prompt) and
    the image's low-res size ``expect`` ``(H_pad/4, W_pad/4)``.

    Raises:
        PromptError: not logits, no visual prompt to refine, another object count or size, NaN / inf values.
    """
    import torch

    if hasattr(memory, "logits_lowres"):
        logits = memory.logits_lowres
    elif isinstance(memory, torch.Tensor):
        logits = memory
    elif isinstance(memory, np.ndarray):  # a view with negative strides (a flipped array) needs its own copy
        logits = torch.as_tensor(np.ascontiguousarray(memory))
    else:
        raise PromptError(f"memory must be the previous Prediction or its logits_lowres, got {type(memory).__name__}")
    if num_objects is None:
        raise PromptError("memory refines visual prompts: pass the clicks/boxes/scribbles of the objects too")
    if logits.ndim != 3 or logits.shape[0] != num_objects:
        raise PromptError(f"memory must be (K={num_objects}, h, w) logits of the same objects, got {tuple(logits.shape)}")
    if tuple(logits.shape[-2:]) != tuple(expect):
        raise PromptError(
            f"memory is {tuple(logits.shape[-2:])} logits, this image needs {tuple(expect)}: "
            "memory must come from a prediction on the same image"
        )
    if not torch.isfinite(logits).all():
        raise PromptError("memory contains NaN or infinite logits")
    return logits
