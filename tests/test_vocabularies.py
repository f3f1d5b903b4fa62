"""seem.vocabularies: the COCO panoptic label space and the vocabulary parser."""

from __future__ import annotations

import pytest

from seem.errors import PromptError
from seem.vocabularies import (
    COCO_PANOPTIC_CATEGORY_IDS,
    COCO_PANOPTIC_CLASSES,
    COCO_PANOPTIC_THING_FLAGS,
    display_name,
    parse_vocabulary,
)


def test_coco_panoptic_classes_match_detectron2_order():
    assert len(COCO_PANOPTIC_CLASSES) == 133 == len(set(COCO_PANOPTIC_CLASSES))
    assert COCO_PANOPTIC_THING_FLAGS == (True,) * 80 + (False,) * 53
    assert COCO_PANOPTIC_CLASSES[:3] == ("person", "bicycle", "car")
    assert COCO_PANOPTIC_CLASSES[79] == "toothbrush"
    assert COCO_PANOPTIC_CLASSES[80:83] == ("banner", "blanket", "bridge")
    assert COCO_PANOPTIC_CLASSES[-2:] == ("wall-other-merged", "rug-merged")
    assert COCO_PANOPTIC_CLASSES.index("sky-other-merged") == 119


def test_coco_category_ids():
    ids = dict(zip(COCO_PANOPTIC_CLASSES, COCO_PANOPTIC_CATEGORY_IDS))
    assert len(COCO_PANOPTIC_CATEGORY_IDS) == 133
    assert list(COCO_PANOPTIC_CATEGORY_IDS) == sorted(set(COCO_PANOPTIC_CATEGORY_IDS))
    # spot checks against panopticapi's panoptic_coco_categories.json
    assert (ids["person"], ids["stop sign"], ids["tv"], ids["toothbrush"]) == (1, 13, 72, 90)
    assert (ids["banner"], ids["door-stuff"], ids["snow"], ids["tree-merged"], ids["rug-merged"]) == (92, 112, 159, 184, 200)


def test_display_name():
    assert display_name("wall-other-merged") == "wall"
    assert display_name("door-stuff") == "door"
    assert display_name("sky-other-merged") == "sky"
    assert display_name("teddy bear") == "teddy bear"


def test_parse_coco_and_comma_lists():
    assert parse_vocabulary("coco") == list(COCO_PANOPTIC_CLASSES)
    assert parse_vocabulary(" COCO ") == list(COCO_PANOPTIC_CLASSES)
    assert parse_vocabulary("cat, dog ,sofa,") == ["cat", "dog", "sofa"]
    assert parse_vocabulary("zebra") == ["zebra"]


def test_parse_file(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("# my classes\ncat\n\n  red car  \n# skipped\ndog\n", encoding="utf-8")
    assert parse_vocabulary(str(path)) == ["cat", "red car", "dog"]


@pytest.mark.parametrize(
    "spec, match",
    [
        ("", "empty"),
        (" , ,", "empty"),
        ("cat,dog,Cat", r"duplicate names \['Cat'\]"),
        ("missing/classes.txt", "not found"),
    ],
)
def test_parse_errors(spec, match):
    with pytest.raises(PromptError, match=match):
        parse_vocabulary(spec)


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("# only a comment\n\n")
    with pytest.raises(PromptError, match="empty.txt: is empty"):
        parse_vocabulary(str(path))
