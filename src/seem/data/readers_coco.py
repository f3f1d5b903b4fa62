"""COCO panoptic format: one JSON for the whole split, one RGB-encoded id PNG per image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from seem.data.readers_common import (
    PathLike,
    check_size,
    existing_dir,
    field,
    load_json,
    normalize_index,
    read_image,
    stack_masks,
)
from seem.data.sample import Sample
from seem.errors import ConfigError, ImageError
from seem.vocabularies import display_name


@dataclass(frozen=True)
class _Entry:
    image_id: str
    image_file: str
    png_file: str
    segment_ids: tuple[int, ...]
    category_ids: tuple[int, ...]


class CocoPanopticReader:
    """Lazy, indexable reader of a COCO-panoptic dataset; ``reader[i]`` is a :class:`Sample`.

    Layout (the official ``panoptic_{train,val}2017`` release, or your own in the same format)::

        image_dir/<images[].file_name>                 e.g. train2017/000000000009.jpg
        panoptic_png_dir/<annotations[].file_name>     e.g. panoptic_train2017/000000000009.png
        panoptic_json = {
          "images":      [{"id": 9, "file_name": "000000000009.jpg", ...}, ...],
          "annotations": [{"image_id": 9, "file_name": "000000000009.png",
                           "segments_info": [{"id": 3226956, "category_id": 1, "iscrowd": 0, ...}, ...]}, ...],
          "categories":  [{"id": 1, "name": "person", "isthing": 1}, ...]}

    A PNG pixel ``(R, G, B)`` belongs to segment ``id = R + 256 G + 256^2 B``; ``0`` is void. Pixels whose id
    is not listed in ``segments_info`` are ignored; a listed segment absent from the PNG gets an all-False
    mask (kept, so the masks follow ``segments_info`` one to one).

    Samples follow the order of ``annotations``; segments within one follow ``segments_info``. The JSON is
    parsed and checked once, here; pixels are read on ``reader[i]``.

    Args:
        include_crowd: keep ``iscrowd=1`` segments (a group of objects under one mask). Off by default, as
            SEEM's training mapper drops them; when on they are indistinguishable from other segments.
        clean_names: name classes as SEEM prompts them, :func:`seem.vocabularies.display_name`
            (``"wall-other-merged"`` -> ``"wall"``); False keeps the JSON names.

    Raises:
        ConfigError: a directory or the JSON is missing, the JSON is malformed (a required key missing or of
            the wrong type, a segment's ``category_id`` not in ``categories``, an ``image_id`` not in
            ``images``, duplicate ids).
        ImageError (on ``reader[i]``): the image or PNG is missing or corrupt, or their sizes differ.
    """

    def __init__(
        self,
        image_dir: PathLike,
        panoptic_json: PathLike,
        panoptic_png_dir: PathLike,
        *,
        include_crowd: bool = False,
        clean_names: bool = True,
    ) -> None:
        self.image_dir = existing_dir(image_dir, "COCO image directory")
        self.panoptic_png_dir = existing_dir(panoptic_png_dir, "COCO panoptic PNG directory")
        self.panoptic_json = Path(panoptic_json)
        self.include_crowd = bool(include_crowd)
        self.clean_names = bool(clean_names)
        data = load_json(self.panoptic_json, "COCO panoptic JSON")
        src = str(self.panoptic_json)
        if not isinstance(data, dict):
            raise ConfigError(f"{src}: expected a JSON object with images/annotations/categories")
        self._categories = self._parse_categories(field(data, "categories", list, src), src)
        files = self._parse_images(field(data, "images", list, src), src)
        self._entries = [
            self._parse_annotation(a, k, files, src)
            for k, a in enumerate(field(data, "annotations", list, src))
        ]

    # ------------------------------------------------------------------------------------ parsing
    def _parse_categories(self, items: list, src: str) -> dict[int, tuple[str, bool]]:
        cats: dict[int, tuple[str, bool]] = {}
        for k, c in enumerate(items):
            where = f"{src}: categories[{k}]"
            cid = field(c, "id", int, where)
            name = field(c, "name", str, where)
            isthing = field(c, "isthing", (int, bool), where)
            if cid in cats:
                raise ConfigError(f"{where}: duplicate category id {cid}")
            if not name.strip():
                raise ConfigError(f"{where}: blank category name")
            cats[cid] = (display_name(name) if self.clean_names else name, bool(isthing))
        return cats

    @staticmethod
    def _parse_images(items: list, src: str) -> dict:
        files = {}
        for k, im in enumerate(items):
            where = f"{src}: images[{k}]"
            iid = field(im, "id", (int, str), where)
            if iid in files:
                raise ConfigError(f"{where}: duplicate image id {iid!r}")
            files[iid] = field(im, "file_name", str, where)
        return files

    def _parse_annotation(self, ann: object, k: int, files: dict, src: str) -> _Entry:
        where = f"{src}: annotations[{k}]"
        iid = field(ann, "image_id", (int, str), where)
        if iid not in files:
            raise ConfigError(f"{where}: image_id {iid!r} is not in 'images'")
        png = field(ann, "file_name", str, where)
        seg_ids: list[int] = []
        cat_ids: list[int] = []
        for j, seg in enumerate(field(ann, "segments_info", list, where)):
            swhere = f"{where}.segments_info[{j}] (image {iid!r})"
            sid = field(seg, "id", int, swhere)
            cid = field(seg, "category_id", int, swhere)
            if cid not in self._categories:
                raise ConfigError(f"{swhere}: unknown category_id {cid}; it is not in 'categories'")
            if not 0 < sid < 256**3:
                raise ConfigError(f"{swhere}: segment id {sid} is not in 1..{256**3 - 1} (0 is void)")
            if sid in seg_ids:
                raise ConfigError(f"{swhere}: duplicate segment id {sid}")
            if seg.get("iscrowd", 0) and not self.include_crowd:
                continue
            seg_ids.append(sid)
            cat_ids.append(cid)
        return _Entry(str(iid), files[iid], png, tuple(seg_ids), tuple(cat_ids))

    # ------------------------------------------------------------------------------------ access
    @property
    def class_names(self) -> tuple[str, ...]:
        """All category names, in the JSON's ``categories`` order (cleaned if ``clean_names``)."""
        return tuple(name for name, _ in self._categories.values())

    @property
    def thing_flags(self) -> tuple[bool, ...]:
        """``isthing`` of each category, aligned with :attr:`class_names`."""
        return tuple(thing for _, thing in self._categories.values())

    @property
    def category_ids(self) -> tuple[int, ...]:
        """COCO ``id`` of each category, aligned with :attr:`class_names`."""
        return tuple(self._categories)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> Sample:
        e = self._entries[normalize_index(index, len(self), type(self).__name__)]
        image = read_image(self.image_dir / e.image_file, e.image_id)
        ids = _read_id_png(self.panoptic_png_dir / e.png_file, e.image_id)
        check_size(ids.shape, image.shape[:2], f"panoptic PNG {self.panoptic_png_dir / e.png_file}")
        masks = stack_masks([ids == sid for sid in e.segment_ids], image.shape[:2])
        return Sample(
            image=image,
            masks=masks,
            class_names=[self._categories[c][0] for c in e.category_ids],
            is_thing=np.array([self._categories[c][1] for c in e.category_ids], dtype=bool),
            expressions=[],
            image_id=e.image_id,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.panoptic_json)!r}, {len(self)} images, {len(self._categories)} categories)"


def _read_id_png(path: Path, image_id: str) -> np.ndarray:
    """``(H, W)`` int32 segment ids of a COCO panoptic PNG: ``R + 256 G + 256^2 B``."""
    what = f"panoptic PNG of sample {image_id!r}: {path}"
    if not path.is_file():
        raise ImageError(f"{what} not found")
    try:
        with Image.open(path) as img:
            mode = img.mode
            rgb = np.asarray(img.convert("RGB"), dtype=np.int32) if mode in ("RGB", "RGBA") else None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{what} cannot be read ({exc})") from None
    if rgb is None:
        raise ImageError(f"{what} has mode {mode!r}; COCO panoptic PNGs are RGB (id = R + 256 G + 256^2 B)")
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
