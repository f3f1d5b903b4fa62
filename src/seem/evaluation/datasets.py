"""Interactive-segmentation data sets for :func:`seem.evaluation.runner.run_interactive`.

Every data set here is lazy and indexable: ``len(ds)`` images, ``ds[i]`` -> ``(name, image, instances)`` with
``image`` ``(H, W, 3)`` uint8 RGB and ``instances`` a list of ``(gt, ignore)``: ``gt`` ``(H, W)`` bool (the object)
and ``ignore`` ``(H, W)`` bool or ``None`` (pixels that count neither for IoU nor as click targets).
``ds.skipped`` lists the objects left out because they have no pixel (outside ``ignore``); ``ds.describe()``
is a JSON-able description for the report.

* :class:`RitmFolderDataset`: the folder layout of the RITM / f-BRS / SimpleClick code bases
  (``isegm/data/datasets/{grabcut,berkeley,davis}.py``) for GrabCut, Berkeley and DAVIS, where a mask value of
  128 marks GrabCut's uncertain boundary band (ignored by the standard protocol).
* :class:`CocoInstancesDataset`: the non-crowd instances of a COCO instances JSON (as SBD / COCO-MVal
  evaluations use them).
* :class:`SceneInstancesDataset` / :class:`SceneSamples`: generated scenes (seeds ``0 .. N-1``), the same
  objects :func:`seem.evaluation.scenes_eval.evaluate_scenes` evaluates.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from seem.errors import ConfigError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MASK_SUFFIXES = (".png", ".bmp")
IMAGE_DIRS = ("images", "data_GT", "img")
MASK_DIRS = ("masks", "boundary_GT", "gt")

Instance = tuple  # (gt (H, W) bool, ignore (H, W) bool | None)


def _warn_skipped(where: str, name: str, k: int) -> None:
    warnings.warn(f"{where}: object {k} of {name!r} has no pixels (outside the ignore band): skipped", stacklevel=3)


class RitmFolderDataset:
    """GrabCut / Berkeley / DAVIS in the RITM folder layout.

    Layout: ``root/<images>/NAME.(jpg|jpeg|png|bmp|tif)`` with ``<images>`` the first of ``images``,
    ``data_GT``, ``img`` that exists, and ``root/<masks>/`` the first of ``masks``, ``boundary_GT``, ``gt``.
    Each image has either one mask ``NAME.png`` (or ``NAME.bmp``): one object, or several ``NAME_<k>.png``
    (``.bmp``): one object each, in the order of ``k``. Mask values (uint8; channel 0 of a 3-channel mask):
    ``ignore_value`` (default 128, GrabCut's boundary band) -> ignore, other values ``> 127`` -> object,
    the rest background.

    Args:
        root: the data set folder (e.g. ``../shared/benchmarks/grabcut``).
        ignore_value: mask value of ignored pixels; ``None`` (or a negative value) for no ignore band.

    Raises:
        ConfigError: ``root``, its image or mask directory is missing, no image, an image without a mask
            (at construction); a mask whose size differs from its image's (on ``ds[i]``).
        ImageError (on ``ds[i]``): an unreadable image or mask.

    An object without pixels outside the ignore band is skipped with a warning and listed in ``skipped``.
    """

    def __init__(self, root, ignore_value: int | None = 128) -> None:
        root = Path(root)
        if not root.is_dir():
            raise ConfigError(f"RITM data set folder {root}: {'is not a directory' if root.exists() else 'not found'}")
        self.root = root
        self.ignore_value = None if ignore_value is None or int(ignore_value) < 0 else int(ignore_value)
        self.image_dir = self._find_dir(IMAGE_DIRS, "image")
        self.mask_dir = self._find_dir(MASK_DIRS, "mask")
        images = sorted(p for p in self.image_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise ConfigError(f"{self.image_dir}: no image ({'/'.join(IMAGE_SUFFIXES)}) found")
        masks = {p.name: p for p in self.mask_dir.iterdir() if p.is_file() and p.suffix.lower() in MASK_SUFFIXES}
        stems = {p.stem for p in images}
        self._items: list[tuple[str, Path, list[Path]]] = []
        missing = []
        for img in images:
            found = self._masks_of(img.stem, masks, stems)
            if not found:
                missing.append(img.name)
            self._items.append((img.stem, img, found))
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise ConfigError(f"{self.mask_dir}: no mask NAME.png / NAME_<k>.png (or .bmp) for {len(missing)} "
                              f"image(s) of {self.image_dir}: {shown}")
        self.skipped: list[str] = []

    def _find_dir(self, names: tuple[str, ...], what: str) -> Path:
        for name in names:
            if (self.root / name).is_dir():
                return self.root / name
        raise ConfigError(f"RITM data set folder {self.root}: no {what} directory (expected one of "
                          f"{', '.join(n + '/' for n in names)})")

    @staticmethod
    def _masks_of(stem: str, masks: dict[str, Path], stems: set[str]) -> list[Path]:
        for suffix in MASK_SUFFIXES:
            for name in (stem + suffix, stem + suffix.upper()):
                if name in masks:
                    return [masks[name]]
        pattern = re.compile(re.escape(stem) + r"_(\d+)\.(png|bmp)", re.IGNORECASE)
        numbered = []
        for name, path in masks.items():
            m = pattern.fullmatch(name)
            if m and Path(name).stem not in stems:  # "a_1.png" is the mask of image "a_1" when that exists
                numbered.append((int(m.group(1)), path))
        return [p for _, p in sorted(numbered)]

    def __len__(self) -> int:
        return len(self._items)

    def read_mask(self, path: Path) -> np.ndarray:
        """``(H, W)`` integer values of a mask file (channel 0 of a colour mask). ImageError if unreadable."""
        from PIL import Image, UnidentifiedImageError

        from seem.errors import ImageError

        try:
            with Image.open(path) as img:
                img = img.convert("L") if img.mode == "1" else img  # 1-bit masks: 0 / 255
                if img.mode in ("L", "I", "I;16", "F"):
                    return np.asarray(img).astype(np.int64)
                return np.asarray(img.convert("RGB")).astype(np.int64)[..., 0]  # colour / palette: channel 0
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"mask {path} cannot be read ({exc})") from None

    def instances_of(self, values: np.ndarray) -> Instance:
        """``(gt, ignore)`` of one mask's values: ``ignore = values == ignore_value`` (``None`` when empty),
        ``gt = values > 127`` outside ``ignore``."""
        ignore = values == self.ignore_value if self.ignore_value is not None else np.zeros(values.shape, bool)
        gt = (values > 127) & ~ignore
        return gt, (ignore if ignore.any() else None)

    def __getitem__(self, index: int) -> tuple[str, np.ndarray, list[Instance]]:
        from seem.data.readers_common import normalize_index, read_image

        name, image_path, mask_paths = self._items[normalize_index(index, len(self), type(self).__name__)]
        image = read_image(image_path, name)
        instances = []
        for k, path in enumerate(mask_paths):
            values = self.read_mask(path)
            if values.shape != image.shape[:2]:
                raise ConfigError(f"mask {path} is {values.shape[0]}x{values.shape[1]} (HxW) but its image "
                                  f"{image_path} is {image.shape[0]}x{image.shape[1]}; they must match")
            gt, ignore = self.instances_of(values)
            if not gt.any():
                self.skipped.append(f"{name}#{k}")
                _warn_skipped(str(self.root), name, k)
                continue
            instances.append((gt, ignore))
        return name, image, instances

    def describe(self) -> dict:
        return {"type": "ritm_folder", "root": str(self.root), "images": self.image_dir.name, "masks": self.mask_dir.name,
                "num_images": len(self), "ignore_value": self.ignore_value}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, {len(self)} images)"


class CocoInstancesDataset:
    """The non-crowd instances of a COCO instances JSON (polygons or RLE, decoded with pycocotools).

    Args:
        image_dir: folder of the ``images[].file_name`` files.
        instances_json: ``{"images": [{"id", "file_name", "height", "width"}], "annotations": [{"id", "image_id",
            "segmentation", "iscrowd", "area"}], ...}``.
        min_area: leave out instances whose ``area`` (pixels; the decoded area when the key is absent) is below.

    Images without a kept instance are left out. Raises ConfigError (missing / malformed files) and
    :class:`~seem.errors.MissingDependencyError` (an ``ImportError``) without pycocotools:
    ``pip install 'seem-torch[io]'``.
    """

    def __init__(self, image_dir, instances_json, min_area: float = 0) -> None:
        from seem.data.readers_common import existing_dir, field, load_json
        from seem.errors import require

        require("pycocotools.mask", "io")  # fail now, not on the first image
        self.image_dir = existing_dir(image_dir, "COCO image directory")
        self.instances_json = Path(instances_json)
        self.min_area = float(min_area)
        data = load_json(self.instances_json, "COCO instances JSON")
        src = str(self.instances_json)
        if not isinstance(data, dict):
            raise ConfigError(f"{src}: expected a JSON object with images/annotations")
        images = {}
        for k, im in enumerate(field(data, "images", list, src)):
            where = f"{src}: images[{k}]"
            images[field(im, "id", (int, str), where)] = (field(im, "file_name", str, where), field(im, "height", int, where),
                                                        field(im, "width", int, where))
        by_image: dict = {}
        for k, a in enumerate(field(data, "annotations", list, src)):
            where = f"{src}: annotations[{k}]"
            iid = field(a, "image_id", (int, str), where)
            if iid not in images:
                raise ConfigError(f"{where}: image_id {iid!r} is not in 'images'")
            area = a.get("area", np.inf)
            if not isinstance(area, (int, float)) or isinstance(area, bool):
                raise ConfigError(f"{where}: 'area' must be a number, got {type(area).__name__}")
            if a.get("iscrowd", 0) or area < self.min_area:
                continue
            by_image.setdefault(iid, []).append((a.get("id", k), field(a, "segmentation", (list, dict), where)))
        self._items = [(iid, *images[iid], by_image[iid]) for iid in images if iid in by_image]
        if not self._items:
            raise ConfigError(f"{src}: no non-crowd instance (with area >= {min_area:g})")
        self.skipped: list[str] = []

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> tuple[str, np.ndarray, list[Instance]]:
        from seem.data.readers_common import check_size, normalize_index, read_image
        from seem.data.readers_refcoco import _decode_segmentation

        iid, file_name, h, w, anns = self._items[normalize_index(index, len(self), type(self).__name__)]
        image = read_image(self.image_dir / file_name, str(iid))
        check_size(image.shape[:2], (h, w), f"image {self.image_dir / file_name} (size from the instances JSON)")
        instances = []
        for k, (aid, seg) in enumerate(anns):
            gt = _decode_segmentation(seg, h, w, f"annotation {aid!r}")
            if not gt.any() or gt.sum() < self.min_area:
                self.skipped.append(f"{iid}#{aid}")
                _warn_skipped(str(self.instances_json), str(iid), k)
                continue
            instances.append((gt, None))
        return str(iid), image, instances

    def describe(self) -> dict:
        return {"type": "coco_instances", "images": str(self.image_dir), "annotations": str(self.instances_json),
                "num_images": len(self), "min_area": self.min_area}


class SceneSamples:
    """Generated scenes ``SceneGenerator(SceneConfig(size)).sample(seed)`` for seeds ``start .. start + num - 1``
    as :class:`~seem.data.sample.Sample` records (``image_id = "scene<seed>"``), with the generator's label space
    as :attr:`class_names` / :attr:`thing_flags` (for referring and panoptic evaluation)."""

    def __init__(self, num: int = 200, size: int = 320, start: int = 0) -> None:
        from seem.data.scenes import SceneConfig, SceneGenerator

        if int(num) < 1:
            raise ConfigError(f"number of scenes must be >= 1, got {num}")
        self.num, self.size, self.start = int(num), int(size), int(start)
        self.generator = SceneGenerator(SceneConfig(size=self.size))
        things = set(self.generator.thing_classes)
        self.class_names = tuple(self.generator.vocabulary)
        self.thing_flags = tuple(n in things for n in self.class_names)
        self.skipped: list[str] = []

    def __len__(self) -> int:
        return self.num

    def scene(self, index: int):
        from seem.data.readers_common import normalize_index

        return self.generator.sample(self.start + normalize_index(index, len(self), type(self).__name__))

    def __getitem__(self, index: int):
        from seem.data.sample import Sample

        s = self.scene(index)
        return Sample(image=s.image, masks=s.masks, class_names=list(s.class_names), is_thing=np.asarray(s.is_thing, bool),
                      expressions=[(t, int(k)) for t, k in s.expressions], image_id=f"scene{self.start + int(index) % self.num}")

    def describe(self) -> dict:
        return {"type": "scenes", "num_images": self.num, "first_seed": self.start,
                "last_seed": self.start + self.num - 1, "size": self.size}


class SceneInstancesDataset(SceneSamples):
    """Generated scenes for the click protocol: the thing segments of each scene, at most ``max_objects`` of
    them chosen as :func:`seem.evaluation.scenes_eval.chosen_things` does (``None`` or 0: all); no ignore."""

    def __init__(self, num: int = 200, size: int = 320, start: int = 0, max_objects: int | None = 3) -> None:
        super().__init__(num, size, start)
        self.max_objects = max_objects

    def __getitem__(self, index: int) -> tuple[str, np.ndarray, list[Instance]]:
        from seem.evaluation.scenes_eval import chosen_things

        s = self.scene(index)
        seed = self.start + int(index) % self.num
        return f"scene{seed}", s.image, [(s.masks[k], None) for k in chosen_things(s, seed, self.max_objects)]

    def describe(self) -> dict:
        return super().describe() | {"max_objects_per_scene": self.max_objects}
