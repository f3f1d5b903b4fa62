"""seem.data readers: tiny datasets written in tmp_path in each format, read back pixel for pixel."""

from __future__ import annotations

import json
import os
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from seem.data.readers import CocoPanopticReader, MaskFolderReader, RefCocoReader, Sample, load_refs
from seem.errors import ConfigError, ImageError, SeemError

H, W = 6, 8


def _image(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(path)


def _box(y0, y1, x0, x1, h=H, w=W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _write_json(path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


# ================================================================================== COCO panoptic
WALL_ID = 5 + 256 * 2 + 256**2 * 1  # RGB (5, 2, 1): exercises all three bytes of the encoding
PERSON_MASK = _box(1, 4, 1, 3)
WALL_MASK = _box(0, 6, 5, 8)
CROWD_MASK = _box(5, 6, 0, 2)


@pytest.fixture
def coco(tmp_path):
    ids = np.zeros((H, W, 3), np.uint8)
    ids[PERSON_MASK] = (1, 0, 0)
    ids[WALL_MASK] = (5, 2, 1)
    ids[CROWD_MASK] = (7, 0, 0)
    ids[0, 0] = (99, 0, 0)  # an id not in segments_info: ignored
    _save(tmp_path / "png" / "a.png", ids)
    _save(tmp_path / "png" / "b.png", np.zeros((H, W, 3), np.uint8))
    _save(tmp_path / "img" / "a.png", _image(0))  # PNG so pixels round-trip exactly
    _save(tmp_path / "img" / "b.png", _image(1))
    data = {
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
        "annotations": [
            {
                "image_id": 1,
                "file_name": "a.png",
                "segments_info": [
                    {"id": 1, "category_id": 1, "iscrowd": 0},
                    {"id": WALL_ID, "category_id": 199, "iscrowd": 0},
                    {"id": 7, "category_id": 1, "iscrowd": 1},
                ],
            },
            {"image_id": 2, "file_name": "b.png", "segments_info": []},
        ],
        "categories": [
            {"id": 1, "name": "person", "isthing": 1},
            {"id": 199, "name": "wall-other-merged", "isthing": 0},
        ],
    }
    _write_json(tmp_path / "panoptic.json", data)
    return tmp_path, data


def test_coco_panoptic_reads_exact_segments(coco):
    root, _ = coco
    reader = CocoPanopticReader(root / "img", root / "panoptic.json", root / "png")
    assert len(reader) == 2
    s = reader[0]
    assert isinstance(s, Sample) and s.image_id == "1"
    np.testing.assert_array_equal(s.image, _image(0))
    assert s.masks.dtype == bool and s.masks.shape == (2, H, W)
    np.testing.assert_array_equal(s.masks[0], PERSON_MASK)
    np.testing.assert_array_equal(s.masks[1], WALL_MASK)
    assert s.class_names == ["person", "wall"]
    assert s.is_thing.tolist() == [True, False]
    assert s.expressions == []
    empty = reader[-1]
    assert empty.image_id == "2" and empty.masks.shape == (0, H, W) and empty.is_thing.shape == (0,)
    assert reader.class_names == ("person", "wall") and reader.thing_flags == (True, False)
    assert reader.category_ids == (1, 199)
    with pytest.raises(IndexError):
        reader[2]


def test_coco_panoptic_crowd_and_raw_names(coco):
    root, _ = coco
    reader = CocoPanopticReader(
        root / "img", root / "panoptic.json", root / "png", include_crowd=True, clean_names=False
    )
    s = reader[0]
    assert s.class_names == ["person", "wall-other-merged", "person"]
    np.testing.assert_array_equal(s.masks[2], CROWD_MASK)


def test_coco_panoptic_unknown_category_is_a_config_error(coco):
    root, data = coco
    data["annotations"][0]["segments_info"][1]["category_id"] = 5
    _write_json(root / "panoptic.json", data)
    with pytest.raises(ConfigError, match=r"segments_info\[1\] \(image 1\): unknown category_id 5"):
        CocoPanopticReader(root / "img", root / "panoptic.json", root / "png")


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"images": [', r"not valid JSON \(line 1"),
        ('{"images": [], "categories": []}', "missing key 'annotations'"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_coco_panoptic_malformed_json(coco, text, message):
    root, _ = coco
    (root / "panoptic.json").write_text(text)
    with pytest.raises(ConfigError, match=message):
        CocoPanopticReader(root / "img", root / "panoptic.json", root / "png")


def test_coco_panoptic_missing_files(coco):
    root, _ = coco
    with pytest.raises(ConfigError, match="not found"):
        CocoPanopticReader(root / "img", root / "nope.json", root / "png")
    with pytest.raises(ConfigError, match="PNG directory"):
        CocoPanopticReader(root / "img", root / "panoptic.json", root / "missing")
    reader = CocoPanopticReader(root / "img", root / "panoptic.json", root / "png")
    (root / "img" / "a.png").unlink()
    with pytest.raises(ImageError, match=r"sample '1'.*a\.png not found"):
        reader[0]
    (root / "png" / "b.png").unlink()
    with pytest.raises(ImageError, match=r"panoptic PNG of sample '2'"):
        reader[1]


def test_coco_panoptic_png_problems(coco):
    root, _ = coco
    reader = CocoPanopticReader(root / "img", root / "panoptic.json", root / "png")
    _save(root / "png" / "a.png", np.zeros((H, W + 1, 3), np.uint8))
    with pytest.raises(ImageError, match="must match"):
        reader[0]
    _save(root / "png" / "a.png", np.zeros((H, W), np.uint8))
    with pytest.raises(ImageError, match="mode 'L'"):
        reader[0]


# ================================================================================== RefCOCO
RH, RW = 8, 10


def _rle(mask):
    import pycocotools.mask as mu

    rle = mu.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [RH, RW], "counts": rle["counts"].decode("ascii")}


CUP = _box(5, 8, 6, 9, RH, RW)
BALL = _box(0, 2, 7, 10, RH, RW)
BALL_COUNTS = [
    int(n) for n in np.diff(np.flatnonzero(np.diff(np.r_[-1, BALL.T.ravel().astype(int), -1]) != 0))
]
REFS = [
    {
        "ref_id": 0,
        "ann_id": 100,
        "image_id": 10,
        "split": "val",
        "sentences": [{"sent": "man on left"}, {"sent": "left guy"}],
    },
    {"ref_id": 1, "ann_id": 200, "image_id": 20, "split": "train", "sentences": [{"sent": "the dog"}]},
    {
        "ref_id": 2,
        "ann_id": 101,
        "image_id": 10,
        "split": "val",
        "sentences": [{"sent": "red cup"}, {"sent": "red cup"}],
    },
    {
        "ref_id": 3,
        "ann_id": 100,
        "image_id": 10,
        "split": "val",
        "sentences": [{"sent": "tall man"}, {"sent": " "}],
    },
    {"ref_id": 4, "ann_id": 102, "image_id": 10, "split": "val", "sentences": [{"sent": "ball"}]},
]


@pytest.fixture
def refcoco(tmp_path):
    _save(tmp_path / "img" / "c10.png", _image(10, RH, RW))
    _save(tmp_path / "img" / "c20.png", _image(20, RH, RW))
    instances = {
        "images": [
            {"id": 10, "file_name": "c10.png", "height": RH, "width": RW},
            {"id": 20, "file_name": "c20.png", "height": RH, "width": RW},
        ],
        "annotations": [
            {"id": 100, "image_id": 10, "category_id": 1, "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]]},
            {"id": 101, "image_id": 10, "category_id": 2, "segmentation": _rle(CUP)},
            {
                "id": 102,
                "image_id": 10,
                "category_id": 2,
                "segmentation": {"size": [RH, RW], "counts": BALL_COUNTS},
            },
            {"id": 103, "image_id": 10, "category_id": 1, "segmentation": [[0, 0, 1, 0, 1, 1]]},
            {"id": 200, "image_id": 20, "category_id": 3, "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]]},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "cup"}, {"id": 3, "name": "dog"}],
    }
    _write_json(tmp_path / "instances.json", instances)
    (tmp_path / "refs(unc).p").write_bytes(pickle.dumps(REFS, protocol=2))
    return tmp_path, instances


def test_refcoco_one_sample_per_image_with_expressions(refcoco):
    root, _ = refcoco
    reader = RefCocoReader(root / "img", root / "instances.json", root / "refs(unc).p", split="val")
    assert len(reader) == 1
    s = reader[0]
    assert s.image_id == "10"
    np.testing.assert_array_equal(s.image, _image(10, RH, RW))
    assert s.masks.shape == (3, RH, RW)  # ann 100, 101, 102 in order of first reference; 103 unreferred
    np.testing.assert_array_equal(s.masks[0], _box(1, 4, 1, 5, RH, RW))  # polygon, COCO pixel convention
    np.testing.assert_array_equal(s.masks[1], CUP)  # compressed RLE
    np.testing.assert_array_equal(s.masks[2], BALL)  # uncompressed RLE
    assert s.class_names == ["person", "cup", "cup"]
    assert s.is_thing.tolist() == [True, True, True]
    # duplicates of one (sentence, instance) pair and blank sentences are dropped
    assert s.expressions == [
        ("man on left", 0),
        ("left guy", 0),
        ("red cup", 1),
        ("tall man", 0),
        ("ball", 2),
    ]


def test_refcoco_json_refs_and_all_splits(refcoco):
    root, _ = refcoco
    _write_json(root / "refs.json", REFS)
    pickled = RefCocoReader(root / "img", root / "instances.json", root / "refs(unc).p", split=None)
    js = RefCocoReader(root / "img", root / "instances.json", root / "refs.json", split=None)
    assert len(pickled) == len(js) == 2
    for a, b in zip((pickled[0], pickled[1]), (js[0], js[1])):
        assert a.image_id == b.image_id and a.expressions == b.expressions and a.class_names == b.class_names
        np.testing.assert_array_equal(a.masks, b.masks)
    dog = js[1]
    assert (dog.image_id, dog.class_names, dog.expressions) == ("20", ["dog"], [("the dog", 0)])
    assert (
        RefCocoReader(root / "img", root / "instances.json", root / "refs.json", split="train")[0].image_id
        == "20"
    )


def _py2_pickle(obj) -> bytes:
    """Protocol-2 bytes as Python 2 wrote them: ``str`` is a byte string (SHORT_BINSTRING / BINSTRING)."""

    def enc(o) -> bytes:
        if isinstance(o, str):
            raw = o.encode("utf-8")
            return (b"U" + bytes([len(raw)]) if len(raw) < 256 else b"T" + struct.pack("<i", len(raw))) + raw
        if isinstance(o, int):
            return b"J" + struct.pack("<i", o)
        if isinstance(o, list):
            return b"](" + b"".join(enc(v) for v in o) + b"e"
        if isinstance(o, dict):
            return b"}(" + b"".join(enc(k) + enc(v) for k, v in o.items()) + b"u"
        raise TypeError(o)

    return b"\x80\x02" + enc(obj) + b"."


def test_python2_refs_pickle_is_read(tmp_path):
    refs = [{"ann_id": 1, "split": "testA", "sentences": [{"sent": "caf\u00e9 sign"}]}]
    (tmp_path / "refs.p").write_bytes(_py2_pickle(refs))
    assert pickle.loads(_py2_pickle(refs), encoding="bytes")[0][b"split"] == b"testA"  # really byte strings
    assert load_refs(tmp_path / "refs.p") == refs


class _Evil:
    """Unpickling calls ``func(*args)``; both payloads below create ``path``."""

    def __init__(self, kind, path):
        self.kind, self.path = kind, str(path)

    def __reduce__(self):
        if self.kind == "os.mkdir":
            return (os.mkdir, (self.path,))
        return (exec, (f"open({self.path!r}, 'w').close()",))  # a builtin, but not an allowed one


@pytest.mark.parametrize("kind", ["os.mkdir", "builtins.exec"])
def test_malicious_refs_pickle_is_refused_without_running(tmp_path, kind):
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Evil(kind, probe)))  # an ordinary unpickler really runs the payload
    assert probe.exists()
    marker = tmp_path / "marker"
    payload = [dict(REFS[0]), _Evil(kind, marker)]
    (tmp_path / "refs.p").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(ConfigError, match=r"refused to unpickle.*not allowed"):
        load_refs(tmp_path / "refs.p")
    assert not marker.exists()


def test_refcoco_errors(refcoco):
    root, _ = refcoco
    args = (root / "img", root / "instances.json")
    with pytest.raises(ConfigError, match=r"no ref has split 'testB'.*\['train', 'val'\]"):
        RefCocoReader(*args, root / "refs(unc).p", split="testB")
    _write_json(root / "bad_refs.json", [{"ann_id": 999, "image_id": 10, "split": "val", "sentences": []}])
    with pytest.raises(ConfigError, match="ann_id 999 is not an annotation"):
        RefCocoReader(*args, root / "bad_refs.json")
    (root / "garbage.p").write_bytes(b"\x80\x02garbage")
    with pytest.raises(ConfigError, match="not a valid pickle"):
        RefCocoReader(*args, root / "garbage.p")
    _write_json(root / "dict.json", {"refs": REFS})
    with pytest.raises(ConfigError, match="expected a list of ref dicts"):
        RefCocoReader(*args, root / "dict.json")
    reader = RefCocoReader(*args, root / "refs(unc).p")
    _save(root / "img" / "c10.png", _image(10, RH + 1, RW))
    with pytest.raises(ImageError, match="must match"):
        reader[0]
    (root / "img" / "c10.png").unlink()
    with pytest.raises(ImageError, match=r"sample '10'.*not found"):
        reader[0]


# ================================================================================== mask folder
def _folder(tmp_path):
    root = tmp_path / "ds"
    for stem, seed in (("a", 30), ("b", 31), ("c", 32)):
        _save(root / "images" / f"{stem}.png", _image(seed))
    (root / "classes.txt").write_text("cat\ndog\n# a comment, not a class\n\nsky\n")
    _save(root / "masks" / "a_0.png", _box(0, 2, 0, 2).astype(np.uint8) * 255)
    _save(root / "masks" / "a_1_0.png", _box(2, 4, 0, 2).astype(np.uint8) * 255)
    _save(root / "masks" / "a_1_1.png", _box(2, 4, 4, 6).astype(np.uint8))  # any nonzero value counts
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., :3] = 200  # colour everywhere; only alpha marks the mask
    rgba[_box(4, 6, 0, 8), 3] = 255
    _save(root / "masks" / "a_2.png", rgba)
    _save(root / "masks" / "b" / "1.png", _box(1, 5, 1, 7).astype(np.uint8) * 255)
    _save(root / "masks" / "c" / "dog.png", _box(0, 3, 0, 8).astype(np.uint8) * 255)
    _save(root / "masks" / "c_floor.png", _box(3, 6, 0, 8).astype(np.uint8) * 255)
    _write_json(
        root / "masks" / "c.json",
        {
            "segments": [
                {"file": "c/dog.png", "class": "dog", "expressions": ["the brown dog", "dog on top"]},
                {"file": "c_floor.png", "class": 2, "isthing": True},
            ]
        },
    )
    return root


def test_mask_folder_reads_all_layouts(tmp_path):
    root = _folder(tmp_path)
    reader = MaskFolderReader(root, stuff=["sky"])
    assert len(reader) == 3 and [reader[i].image_id for i in range(3)] == ["a", "b", "c"]
    a = reader[0]
    np.testing.assert_array_equal(a.image, _image(30))
    assert a.class_names == ["cat", "dog", "dog", "sky"]
    assert a.is_thing.tolist() == [True, True, True, False]
    expected = [_box(0, 2, 0, 2), _box(2, 4, 0, 2), _box(2, 4, 4, 6), _box(4, 6, 0, 8)]
    np.testing.assert_array_equal(a.masks, np.stack(expected))
    assert a.expressions == []
    b = reader[1]
    assert b.class_names == ["dog"] and b.is_thing.tolist() == [True]
    np.testing.assert_array_equal(b.masks[0], _box(1, 5, 1, 7))
    c = reader[2]
    assert c.class_names == ["dog", "sky"] and c.is_thing.tolist() == [True, True]  # isthing overrides stuff
    np.testing.assert_array_equal(c.masks, np.stack([_box(0, 3, 0, 8), _box(3, 6, 0, 8)]))
    assert c.expressions == [("the brown dog", 0), ("dog on top", 0)]


def test_mask_folder_sidecars_without_class_list(tmp_path):
    root = tmp_path / "ds"
    _save(root / "images" / "x.jpg", _image(5))
    _save(root / "masks" / "x" / "m.png", _box(0, 1, 0, 1).astype(np.uint8))
    _write_json(root / "masks" / "x.json", {"segments": [{"file": "x/m.png", "class": "any new thing"}]})
    _save(root / "images" / "y.png", _image(6))
    _write_json(root / "masks" / "y.json", {"segments": []})
    reader = MaskFolderReader(root)
    assert reader[0].class_names == ["any new thing"] and reader[0].image.shape == (
        H,
        W,
        3,
    )  # JPEG: lossy pixels
    assert reader[1].masks.shape == (0, H, W)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: _save(r / "masks" / "typo_0.png", np.ones((H, W), np.uint8)), "matches no image"),
        (
            lambda r: _save(r / "masks" / "a_7.png", np.ones((H, W), np.uint8)),
            r"class index 7 is outside .*0\.\.2",
        ),
        (lambda r: _save(r / "images" / "d.png", _image(1)), "has no masks"),
        (lambda r: _save(r / "images" / "a.jpg", _image(1)), "two images with stem 'a'"),
        (lambda r: _save(r / "masks" / "b" / "one.png", np.ones((H, W), np.uint8)), "must be <k>.png"),
        (
            lambda r: (
                _save(r / "masks" / "b" / "0.png", np.ones((H, W), np.uint8))
                or _save(r / "masks" / "b_0.png", np.ones((H, W), np.uint8))
            ),
            "same segment",
        ),
        (
            lambda r: _write_json(
                r / "masks" / "c.json", {"segments": [{"file": "../classes.txt", "class": "cat"}]}
            ),
            r"without '\.\.'",
        ),
        (
            lambda r: _write_json(
                r / "masks" / "c.json", {"segments": [{"file": "c/dog.png", "class": "wolf"}]}
            ),
            "not in the class list",
        ),
        (lambda r: _write_json(r / "masks" / "c.json", {"segment": []}), "missing key 'segments'"),
        (lambda r: (r / "masks" / "c.json").write_text("{oops"), "not valid JSON"),
        (lambda r: (r / "classes.txt").write_text("cat\ncat\n"), "duplicate names"),
    ],
    ids=[
        "orphan",
        "class-range",
        "no-masks",
        "dup-stem",
        "bad-name",
        "dup-seg",
        "traversal",
        "class",
        "key",
        "json",
        "classes",
    ],
)
def test_mask_folder_config_errors(tmp_path, mutate, message):
    root = _folder(tmp_path)
    mutate(root)
    with pytest.raises(ConfigError, match=message):
        MaskFolderReader(root)


def test_mask_folder_ambiguous_flat_name(tmp_path):
    root = tmp_path / "ds"
    _save(root / "images" / "p.png", _image(0))
    _save(root / "images" / "p_1.png", _image(1))
    _save(root / "masks" / "p_1_0.png", np.ones((H, W), np.uint8))  # p class 1 instance 0, or p_1 class 0?
    with pytest.raises(ConfigError, match="ambiguous"):
        MaskFolderReader(root, ["cat", "dog"])


def test_mask_folder_pixel_errors(tmp_path):
    root = _folder(tmp_path)
    with pytest.raises(ConfigError, match="image folder"):
        MaskFolderReader(tmp_path)
    reader = MaskFolderReader(root)
    _save(root / "masks" / "b" / "1.png", np.ones((H + 1, W), np.uint8))
    with pytest.raises(ImageError, match="must match"):
        reader[1]
    (root / "masks" / "c" / "dog.png").unlink()
    with pytest.raises(ImageError, match=r"sample 'c'.*not found"):
        reader[2]
    (root / "images" / "a.png").unlink()
    with pytest.raises(ImageError, match=r"sample 'a'.*not found"):
        reader[0]


# ================================================================================== shared behaviour
def test_sample_validates_its_invariants():
    ok = {
        "image": _image(0),
        "masks": np.zeros((1, H, W), bool),
        "class_names": ["cat"],
        "is_thing": np.ones(1, bool),
        "expressions": [("a cat", 0)],
        "image_id": "x",
    }
    assert Sample(**ok).num_segments == 1
    for bad, message in [
        ({"image": _image(0).astype(np.float32)}, "uint8"),
        ({"masks": np.zeros((1, H, W + 1), bool)}, "masks"),
        ({"masks": np.zeros((1, H, W), np.uint8)}, "bool"),
        ({"class_names": ["cat", "dog"]}, "class_names"),
        ({"is_thing": np.ones(2, bool)}, "is_thing"),
        ({"expressions": [("a cat", 1)]}, "refers to mask 1"),
        ({"expressions": [("", 0)]}, "non-blank"),
        ({"image_id": 3}, "image_id"),
    ]:
        with pytest.raises(ValueError, match=message):
            Sample(**{**ok, **bad})


def test_readers_are_deterministic_picklable_and_mixable(tmp_path, coco):
    root, _ = coco
    from torch.utils.data import ConcatDataset

    readers = [
        CocoPanopticReader(root / "img", root / "panoptic.json", root / "png"),
        MaskFolderReader(_folder(tmp_path)),
    ]
    mixed = ConcatDataset([pickle.loads(pickle.dumps(r)) for r in readers])  # as DataLoader workers get them
    assert len(mixed) == 5
    for i in range(len(mixed)):
        first, again = mixed[i], mixed[i]
        assert isinstance(first, Sample) and first.image_id == again.image_id
        np.testing.assert_array_equal(first.masks, again.masks)
    assert [mixed[i].image_id for i in range(5)] == ["1", "2", "a", "b", "c"]
    assert issubclass(ConfigError, SeemError) and issubclass(ImageError, ValueError)
