"""Label spaces: the COCO panoptic categories and a parser for user vocabularies.

``COCO_PANOPTIC_CLASSES[i]`` is the name of contiguous id ``i`` in the order of detectron2's
``COCO_CATEGORIES`` (itself from panopticapi's ``panoptic_coco_categories.json``): 80 things, then
53 stuff classes. ``COCO_PANOPTIC_CATEGORY_IDS[i]`` is the matching (non-contiguous) COCO id, needed
when writing COCO-format results.
"""

from __future__ import annotations

from pathlib import Path

from seem.errors import PromptError

# fmt: off
COCO_PANOPTIC_CLASSES: tuple[str, ...] = (
    # 80 things
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
    # 53 stuff
    "banner", "blanket", "bridge", "cardboard", "counter", "curtain", "door-stuff", "floor-wood",
    "flower", "fruit", "gravel", "house", "light", "mirror-stuff", "net", "pillow", "platform",
    "playingfield", "railroad", "river", "road", "roof", "sand", "sea", "shelf", "snow", "stairs",
    "tent", "towel", "wall-brick", "wall-stone", "wall-tile", "wall-wood", "water-other",
    "window-blind", "window-other", "tree-merged", "fence-merged", "ceiling-merged",
    "sky-other-merged", "cabinet-merged", "table-merged", "floor-other-merged", "pavement-merged",
    "mountain-merged", "grass-merged", "dirt-merged", "paper-merged", "food-other-merged",
    "building-other-merged", "rock-merged", "wall-other-merged", "rug-merged",
)

COCO_PANOPTIC_CATEGORY_IDS: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90,
    92, 93, 95, 100, 107, 109, 112, 118, 119, 122, 125, 128, 130, 133, 138, 141, 144, 145, 147,
    148, 149, 151, 154, 155, 156, 159, 161, 166, 168, 171, 175, 176, 177, 178, 180, 181, 184, 185,
    186, 187, 188, 189, 190, 191, 192, 193, 194, 195, 196, 197, 198, 199, 200,
)
# fmt: on

COCO_PANOPTIC_THING_FLAGS: tuple[bool, ...] = (True,) * 80 + (False,) * 53

_SUFFIXES = ("-other", "-merged", "-stuff")


def display_name(name: str) -> str:
    """A COCO name without its dataset suffixes: ``"wall-other-merged"`` -> ``"wall"``.

    SEEM strips ``-other``, ``-merged`` and ``-stuff`` before building text prompts and when
    showing labels; other names are returned unchanged.
    """
    for suffix in _SUFFIXES:
        name = name.replace(suffix, "")
    return name


def _from_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptError(f"vocabulary file {path}: cannot be read ({exc})") from None
    names = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.append(line)
    return names


def _looks_like_path(spec: str) -> bool:
    return "," not in spec and (spec.endswith((".txt", ".names", ".csv")) or "/" in spec or "\\" in spec)


def parse_vocabulary(spec: str) -> list[str]:
    """Turn a vocabulary spec into class names.

    Args:
        spec: ``"coco"`` (the 133 COCO panoptic classes), a path to a UTF-8 text file with one name
            per line (blank lines and lines starting with ``#`` skipped), or a comma-separated list
            ``"cat, dog, sofa"``. Surrounding whitespace is stripped.

    Raises:
        PromptError: the vocabulary is empty, a file does not exist, or a name appears twice
            (compared case-insensitively).
    """
    if not isinstance(spec, str):
        raise PromptError(f"vocabulary: expected a string, got {type(spec).__name__}")
    spec = spec.strip()
    if spec.lower() in ("coco", "coco_panoptic", "coco-panoptic"):
        return list(COCO_PANOPTIC_CLASSES)
    path = Path(spec)
    if spec and "," not in spec and path.is_file():
        names, source = _from_file(path), f"vocabulary file {path}"
    elif _looks_like_path(spec):
        raise PromptError(f"vocabulary file {spec}: not found")
    else:
        names = [part.strip() for part in spec.split(",") if part.strip()]
        source = "vocabulary"
    if not names:
        raise PromptError(f"{source}: is empty; give 'coco', a file with one name per line, or 'a,b,c'")
    return list(check_vocabulary(names, source))


RESERVED_NAMES = ("background",)  # appended by the model as the no-object class (official eval path)


def check_vocabulary(names, source: str = "vocabulary") -> tuple[str, ...]:
    """Validate class names: a non-empty sequence of distinct, non-blank strings, none of them reserved.

    Raises:
        PromptError: a bare string (``"cat"`` is not a list of names), non-string or blank names,
            duplicates (compared case-insensitively) or ``"background"`` (the model appends it itself).
    """
    if isinstance(names, (str, bytes)):
        raise PromptError(f"{source}: expected a list of class names, got the string {names!r}")
    try:
        names = list(names)
    except TypeError:
        raise PromptError(f"{source}: expected a list of class names, got {type(names).__name__}") from None
    if not names:
        raise PromptError(f"{source}: is empty")
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise PromptError(f"{source}: class names must be non-blank strings, got {bad[:5]!r}")
    seen: dict[str, str] = {}
    duplicates = []
    for name in names:
        key = name.strip().casefold()
        if key in seen:
            duplicates.append(name)
        seen.setdefault(key, name)
    if duplicates:
        raise PromptError(f"{source}: duplicate names {sorted(set(duplicates))}")
    reserved = [n for n in names if n.strip().casefold() in RESERVED_NAMES]
    if reserved:
        raise PromptError(f"{source}: {reserved[0]!r} is reserved (the model adds a background class itself)")
    return tuple(n.strip() for n in names)
