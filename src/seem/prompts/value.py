"""The prompt values: :class:`Prompts` (everything a user can point at) and :class:`ReferencePrompt`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import ArrayLike

from seem.errors import PromptError
from seem.modeling.decoder import VisualPromptTokens
from seem.prompts import checks
from seem.prompts.regions import RegionPrompts, prompt_regions

if TYPE_CHECKING:
    from seem.transforms import ImageFrame

VISUAL_FIELDS = ("points", "boxes", "scribbles", "polygons", "masks")


@dataclass(frozen=True)
class ReferencePrompt:
    """Visual prompt tokens of K objects, sampled from regions of an image (paper: "referred region").

    Made by :meth:`seem.SeemPredictor.encode_reference` from a region of *another* image; usable with any image
    later set on the predictor (zero-shot video uses the first frame's region on every frame).
    """

    tokens: VisualPromptTokens

    @property
    def num_objects(self) -> int:
        return self.tokens.num_objects

    def to(self, dtype: torch.dtype) -> ReferencePrompt:
        """The same tokens in ``dtype`` (a reference encoded by a predictor of another precision); object
        indices and padding flags keep their dtypes."""
        t = self.tokens
        if t.positive_mean.dtype == dtype:
            return self
        return ReferencePrompt(VisualPromptTokens([x.to(dtype) for x in t.tokens], t.objects, t.padding,
                                                  t.positive_mean.to(dtype), t.negative_mean.to(dtype)))

    @classmethod
    def concat(cls, references: Sequence[ReferencePrompt]) -> ReferencePrompt:
        """One reference holding the objects of ``references`` in order (token object indices shifted), so
        several referred regions are decoded in one pass (e.g. :mod:`seem.video`).

        Raises:
            ValueError: no reference given.
        """
        if not references:
            raise ValueError("concat needs at least one ReferencePrompt")
        a = references[0].tokens
        for ref in references[1:]:
            b, shift = ref.tokens, a.num_objects
            a = VisualPromptTokens(
                [torch.cat([x, y]) for x, y in zip(a.tokens, b.tokens)],
                [torch.cat([x, y + shift], dim=1) for x, y in zip(a.objects, b.objects)],
                [torch.cat([x, y], dim=1) for x, y in zip(a.padding, b.padding)],
                torch.cat([a.positive_mean, b.positive_mean], dim=1),
                torch.cat([a.negative_mean, b.negative_mean], dim=1),
            )
        return cls(a)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


def _shapes(value, field: str) -> tuple[np.ndarray, ...]:
    """Scribbles / polygons: each an ``(H, W)`` mask or an ``(M, 2)`` float64 array of (x, y) points."""
    seq = [value] if (isinstance(value, np.ndarray) and value.ndim == 2) else list(value)
    if not seq:
        raise PromptError(f"{field} is an empty list")
    out = []
    for i, s in enumerate(seq):
        s = np.asarray(s)
        if s.ndim != 2:
            raise PromptError(f"{field}[{i}] must be an (H, W) mask or an (M, 2) array of (x, y) points, got {s.shape}")
        if s.shape[1] == 2:
            s = checks.finite(checks.numbers(s, f"{field}[{i}]", "(M, 2) (x, y) pixels"), f"{field}[{i}]")
            if field == "polygons" and len(s) < 3:
                raise PromptError(f"{field}[{i}]: a polygon needs at least 3 (x, y) vertices, got {len(s)}")
        out.append(_frozen(s))
    return tuple(out)


@dataclass(frozen=True, eq=False, init=False)
class Prompts:
    """The prompts of one :meth:`seem.SeemPredictor.predict` call, checked on construction.

    Coordinates are pixels of the *original* image: points ``(x, y)``, boxes XYXY (``x0 < x1``, ``y0 < y1``).
    The constructor takes the forms users pass (lists, ``(N, 2)`` arrays, a single ``(H, W)`` mask ...) and
    stores them normalised, as read-only arrays:

    Attributes:
        points: ``(K, N, 2)`` float64 clicks of K objects (an ``(N, 2)`` input is one object: all its clicks,
            positive and negative, refine the same object, as in SAM).
        point_labels: ``(K, N)`` int64, 1 = positive, 0 = negative (default all positive).
        boxes: ``(K, 4)`` float64 XYXY; sent as the filled rectangle (SEEM v1 has no box encoder).
        scribbles: one per object, an ``(H, W)`` stroke mask or an ``(M, 2)`` float64 polyline (drawn 3 px wide).
        polygons: one per object, ``(M, 2)`` float64 vertices (filled) or an ``(H, W)`` mask.
        masks: one ``(H, W)`` region mask per object (any bool/numeric dtype; nonzero = inside).
        text: referring phrases, one object each.
        reference: a :class:`ReferencePrompt`; its objects follow the others.

    Prompt types that are given must define the same number of objects K; they are merged object by object
    (one box + clicks = one object). What needs the image (inside it, mask sizes, empty strokes) is checked
    by :meth:`to_regions`.

    Raises:
        PromptError: naming the field: malformed or non-finite arrays, ``point_labels`` not 0/1 or without
            ``points``, a box with ``x1 <= x0`` or ``y1 <= y0``, an object with only negative clicks, empty lists
            or phrases, a ``reference`` not from ``encode_reference``, types disagreeing on K.
    """

    points: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    boxes: np.ndarray | None = None
    scribbles: tuple[np.ndarray, ...] | None = None
    polygons: tuple[np.ndarray, ...] | None = None
    masks: tuple[np.ndarray, ...] | None = None
    text: tuple[str, ...] | None = None
    reference: ReferencePrompt | None = None

    def __init__(self, points: ArrayLike | None = None, point_labels: ArrayLike | None = None,
                 boxes: ArrayLike | None = None, scribbles: Sequence[ArrayLike] | np.ndarray | None = None,
                 polygons: Sequence[ArrayLike] | np.ndarray | None = None,
                 masks: Sequence[ArrayLike] | np.ndarray | None = None, text: str | Sequence[str] | None = None,
                 reference: ReferencePrompt | None = None) -> None:
        given = dict(points=points, point_labels=point_labels, boxes=boxes, scribbles=scribbles, polygons=polygons,
                     masks=masks, text=text, reference=reference)
        for name, value in given.items():
            object.__setattr__(self, name, value)
        self._normalise()

    def _normalise(self) -> None:
        def store(name: str, value) -> None:
            object.__setattr__(self, name, value)

        if self.reference is not None and not isinstance(self.reference, ReferencePrompt):
            raise PromptError("reference must come from encode_reference(image, region), "
                              f"got {type(self.reference).__name__}")
        store("text", checks.texts(self.text))
        if self.point_labels is not None and self.points is None:
            raise PromptError("point_labels given without points")
        if self.points is not None:
            pts = checks.finite(checks.numbers(self.points, "points", "(N, 2) or (K, N, 2) (x, y) pixels"), "points")
            pts = pts[None] if pts.ndim == 2 else pts
            if pts.ndim != 3 or pts.shape[-1] != 2 or pts.shape[1] == 0:
                raise PromptError(f"points must be (N, 2) or (K, N, 2) (x, y) pixels, got shape {np.shape(self.points)}")
            labels = checks.point_labels(self.point_labels, pts.shape[:2])
            regions = (self.boxes, self.scribbles, self.polygons, self.masks)
            negative_only = np.flatnonzero(~(labels == 1).any(axis=1))
            if negative_only.size and all(r is None for r in regions):
                k = int(negative_only[0])
                raise PromptError(f"point_labels[{k}]: object {k} has only negative clicks; every object needs at "
                                  "least one positive click (label 1) or a box, scribble, polygon or mask")
            store("points", _frozen(pts))
            store("point_labels", _frozen(labels))
        if self.boxes is not None:
            b = checks.numbers(self.boxes, "boxes", "(K, 4) XYXY pixels")
            b = b[None] if b.ndim == 1 and b.size == 4 else b
            if b.ndim != 2 or b.shape[1] != 4:
                raise PromptError(f"boxes must be (K, 4) XYXY pixels, got shape {b.shape}")
            checks.finite(b, "boxes")
            for i, box in enumerate(b):
                checks.check_box_order(box, f"boxes[{i}]")
            store("boxes", _frozen(b))
        for name in ("scribbles", "polygons"):
            if getattr(self, name) is not None:
                store(name, _shapes(getattr(self, name), name))
        if self.masks is not None:
            store("masks", tuple(_frozen(m) for m in checks.region_list(self.masks, "masks")))
        counts = {name: len(getattr(self, name)) for name in VISUAL_FIELDS if getattr(self, name) is not None}
        if len(set(counts.values())) > 1:
            raise PromptError(f"prompt types define different numbers of objects: {counts}")

    @property
    def num_visual(self) -> int:
        """K of the points / boxes / scribbles / polygons / masks (0 when none is given), reference excluded."""
        return next((len(getattr(self, n)) for n in VISUAL_FIELDS if getattr(self, n) is not None), 0)

    @property
    def has_visual(self) -> bool:
        """Whether any visual prompt (reference included) is given: the objects ``memory`` can refine."""
        return self.num_visual > 0 or self.reference is not None

    @property
    def is_empty(self) -> bool:
        return not self.has_visual and self.text is None

    def to_regions(self, frame: ImageFrame) -> RegionPrompts | None:
        """Positive / negative region masks of the visual objects in ``frame``'s padded model frame (``None``
        without points, boxes, scribbles, polygons or masks); see :func:`seem.prompts.regions.prompt_regions`.

        Raises:
            PromptError: a point or box outside the image, a mask of another size or empty, a stroke or
                polygon covering no pixel, an object with no positive pixel left after resizing.
        """
        return prompt_regions(self, frame)
