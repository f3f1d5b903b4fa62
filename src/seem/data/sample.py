"""The one record every dataset reader yields, so the trainer can mix COCO, RefCOCO and your own folders."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Sample:
    """One training image with its segments and referring expressions, in the original image frame.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB, upright (EXIF orientation applied).
        masks: ``(N, H, W)`` bool, one per segment / instance, same ``H, W`` as ``image``; ``N`` may be 0.
        class_names: length ``N``; ``class_names[i]`` names ``masks[i]`` (plain text, usable in prompts).
        is_thing: ``(N,)`` bool; True for countable objects ("things"), False for amorphous "stuff".
        expressions: ``(text, i)`` pairs: a referring expression and the index ``i`` into ``masks`` of the
            segment it refers to. May be empty; several expressions may refer to one mask.
        image_id: the dataset's id of the image, as a string (``"581857"``, a file stem, ...).

    Construction checks these invariants and raises :class:`ValueError` naming the broken one, so a
    custom reader that yields a bad record fails where the record is made, not deep inside a loss.
    ``eq`` is off: arrays do not compare as booleans. The arrays are not copied; do not mutate a sample
    you did not create.
    """

    image: np.ndarray
    masks: np.ndarray
    class_names: list[str]
    is_thing: np.ndarray
    expressions: list[tuple[str, int]]
    image_id: str

    def __post_init__(self) -> None:
        where = f"Sample {self.image_id!r}"
        if not isinstance(self.image_id, str):
            raise ValueError(f"Sample: image_id must be a str, got {type(self.image_id).__name__}")
        img = self.image
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"{where}: image must be an (H, W, 3) uint8 array, got {_describe(img)}")
        h, w = img.shape[:2]
        m = self.masks
        if not isinstance(m, np.ndarray) or m.dtype != np.bool_ or m.ndim != 3 or m.shape[1:] != (h, w):
            raise ValueError(f"{where}: masks must be an (N, {h}, {w}) bool array, got {_describe(m)}")
        n = m.shape[0]
        if not isinstance(self.class_names, list) or len(self.class_names) != n:
            raise ValueError(f"{where}: class_names must be a list of {n} names (one per mask)")
        if not all(isinstance(c, str) and c.strip() for c in self.class_names):
            raise ValueError(f"{where}: class_names must be non-blank strings, got {self.class_names!r}")
        t = self.is_thing
        if not isinstance(t, np.ndarray) or t.dtype != np.bool_ or t.shape != (n,):
            raise ValueError(f"{where}: is_thing must be a ({n},) bool array, got {_describe(t)}")
        if not isinstance(self.expressions, list):
            raise ValueError(f"{where}: expressions must be a list of (text, mask index) pairs")
        for item in self.expressions:
            ok = isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and item[0].strip()
            if not ok or not isinstance(item[1], (int, np.integer)) or isinstance(item[1], bool):
                raise ValueError(f"{where}: expression {item!r} is not a (non-blank text, int) pair")
            if not 0 <= item[1] < n:
                raise ValueError(
                    f"{where}: expression {item[0]!r} refers to mask {item[1]}, but there are {n}"
                )

    @property
    def num_segments(self) -> int:
        """``N``, the number of masks."""
        return int(self.masks.shape[0])


def _describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype} array of shape {a.shape}"
    return type(a).__name__
