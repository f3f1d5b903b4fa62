"""seem.io: decoding with clear errors, mask encodings and their round trips, overlays, rasterization."""

from __future__ import annotations

import io as _io
import json

import numpy as np
import pytest
from PIL import Image

from seem import io as sio
from seem import rasterize as sras
from seem import visualize as svis
from seem.errors import ImageError, PromptError


def _disk(h=120, w=160, cx=70.0, cy=55.0, r=40.0):
    yy, xx = np.mgrid[:h, :w]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r**2


def _read_png(path, mode=None):
    with Image.open(path) as img:
        assert mode is None or img.mode == mode
        return np.asarray(img).copy()


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.fixture(scope="module")
def astronaut():
    skdata = pytest.importorskip("skimage.data")
    return skdata.astronaut()[::4, ::4].copy()  # (128, 128, 3) uint8, a real photo


# ------------------------------------------------------------------------------------------ load_image
def test_png_round_trip_is_exact(tmp_path, astronaut):
    path = tmp_path / "a.png"
    Image.fromarray(astronaut).save(path)
    with Image.open(path) as pil:
        for source in (path, str(path), path.read_bytes(), pil, astronaut):
            out = sio.load_image(source)
            assert out.dtype == np.uint8 and out.shape == astronaut.shape
            np.testing.assert_array_equal(out, astronaut)


def test_jpeg_decodes_close_to_original(tmp_path, astronaut):
    path = tmp_path / "a.jpg"
    Image.fromarray(astronaut).save(path, quality=95)
    out = sio.load_image(path)
    assert out.shape == astronaut.shape
    assert np.abs(out.astype(int) - astronaut.astype(int)).mean() < 4


def test_modes_are_converted_to_rgb(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 17
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(sio.load_image(tmp_path / "rgba.png")[0, 0], [200, 0, 0])

    gray = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    Image.fromarray(gray, "L").save(tmp_path / "l.png")
    out = sio.load_image(tmp_path / "l.png")
    assert out.shape == (4, 5, 3) and (out == gray[..., None]).all()

    pal = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759)
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(sio.load_image(tmp_path / "p.png")[1], [[0, 0, 255], [255, 0, 0]])

    Image.fromarray(rgba, "RGBA").convert("LA").save(tmp_path / "la.png")
    assert sio.load_image(tmp_path / "la.png").shape == (4, 5, 3)

    Image.new("CMYK", (3, 2), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    red = sio.load_image(tmp_path / "cmyk.jpg")[0, 0].astype(int)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_16bit_png_is_scaled_to_8bit(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "d16.png")
    assert _read_png(tmp_path / "d16.png").dtype == np.uint16
    out = sio.load_image(tmp_path / "d16.png")
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])
    assert (out[..., 0] == out[..., 2]).all()


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = 255  # white left half, landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(img).save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    out = sio.load_image(tmp_path / "rot.jpg")
    assert out.shape == (40, 20, 3)  # portrait now
    assert out[:20].mean() > 200 and out[20:].mean() < 50  # white half on top after a CW turn


def test_array_inputs(astronaut):
    gray = astronaut[..., 0]
    assert sio.load_image(gray).shape == (128, 128, 3)
    rgba = np.concatenate([astronaut, np.full((128, 128, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(sio.load_image(rgba), astronaut)


@pytest.mark.parametrize(
    "array, words",
    [
        (np.zeros((4, 4, 3), np.float32) + 0.5, ["float32", "[0.5, 0.5]", "* 255"]),
        (np.zeros((4, 4, 3), np.float64) + 200.0, ["float64", ".round().astype(np.uint8)"]),
        (np.zeros((4, 4, 3), np.uint16) + 4000, ["uint16", "uint8"]),
        (np.zeros((3, 8, 9), np.uint8), ["channels-first", "transpose"]),
        (np.zeros((8, 8, 5), np.uint8), ["expected shape"]),
        (np.zeros((4, 4), bool), ["mask", "load_mask"]),
        (np.zeros((0, 4, 3), np.uint8), ["zero dimension"]),
    ],
)
def test_bad_arrays_are_explained(array, words):
    with pytest.raises(ImageError) as err:
        sio.load_image(array)
    for word in words:
        assert word in str(err.value)


def test_file_errors_name_file_and_problem(tmp_path):
    with pytest.raises(ImageError, match=r"missing\.png: file not found"):
        sio.load_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.png: file is empty \(0 bytes\)"):
        sio.load_image(tmp_path / "empty.png")
    (tmp_path / "noise.jpg").write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(ImageError, match=r"noise\.jpg: not an image"):
        sio.load_image(tmp_path / "noise.jpg")
    with pytest.raises(ImageError, match="is a directory"):
        sio.load_image(tmp_path)
    with pytest.raises(ImageError, match="not an image"):
        sio.load_image(b"definitely not an image")
    with pytest.raises(ImageError, match="empty bytes"):
        sio.load_image(b"")


def test_truncated_png(tmp_path, astronaut):
    buf = _io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"cut\.png: corrupt or truncated"):
        sio.load_image(tmp_path / "cut.png")


def test_too_many_pixels_checked_from_header(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("1", (8000, 7000)).save(path)  # 56 M pixels, a few KB on disk
    assert path.stat().st_size < 100_000
    with pytest.raises(ImageError, match=r"8000x7000 = 56,000,000 pixels, more than max_pixels=50,000,000"):
        sio.load_image(path)
    with pytest.raises(ImageError, match="max_pixels=100"):
        sio.load_image(np.zeros((20, 20, 3), np.uint8), max_pixels=100)
    assert Image.MAX_IMAGE_PIXELS == 89478485 or Image.MAX_IMAGE_PIXELS is None  # untouched global


# ------------------------------------------------------------------------------------------- load_mask
def test_load_mask_variants(tmp_path):
    m = _disk(40, 50, 25, 20, 12)
    sio.save_mask_png(m, tmp_path / "m.png")
    np.testing.assert_array_equal(sio.load_mask(tmp_path / "m.png"), m)
    assert _read_png(tmp_path / "m.png", mode="L").tolist() == (m * 255).tolist()

    # canvas export: white strokes everywhere in RGB, the drawing is in alpha
    rgba = np.full((40, 50, 4), 255, np.uint8)
    rgba[..., 3] = m * 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "canvas.png")
    np.testing.assert_array_equal(sio.load_mask(tmp_path / "canvas.png"), m)

    rgb = np.zeros((40, 50, 3), np.uint8)
    rgb[m, 1] = 3
    np.testing.assert_array_equal(sio.load_mask(rgb), m)
    np.testing.assert_array_equal(sio.load_mask(m.astype(np.float32)), m)
    assert not sio.load_mask(np.zeros((5, 6), np.uint8)).any()  # empty is returned, not refused


def test_load_mask_size_mismatch_names_both_sizes(tmp_path):
    sio.save_mask_png(np.ones((30, 40), bool), tmp_path / "m.png")
    with pytest.raises(ImageError, match=r"mask is 30x40 \(HxW\) but the image is 31x40"):
        sio.load_mask(tmp_path / "m.png", size=(31, 40))
    assert sio.load_mask(tmp_path / "m.png", size=(30, 40)).all()


# ---------------------------------------------------------------------------------- encodings & files
def test_rle_round_trip():
    m = _disk()
    m[5:9, 100:150] = True
    rle = sio.mask_to_rle(m)
    assert rle["size"] == [120, 160] and isinstance(rle["counts"], str)
    json.dumps(rle)
    np.testing.assert_array_equal(sio.rle_to_mask(rle), m)
    # uncompressed RLE is column-major: 1 zero, 2 ones, 3 zeros
    np.testing.assert_array_equal(sio.rle_to_mask({"size": [3, 2], "counts": [1, 2, 3]}), [[0, 0], [1, 0], [1, 0]])
    with pytest.raises(ImageError, match="invalid RLE"):
        sio.rle_to_mask({"counts": "abc"})


def test_bbox_of_rectangle():
    m = np.zeros((50, 60), bool)
    m[10:20, 5:25] = True
    assert sio.mask_to_bbox(m) == [5, 10, 20, 10]
    assert sio.mask_to_bbox(np.zeros((4, 4), bool)) == [0, 0, 0, 0]


def test_polygon_round_trip_of_disk():
    m = _disk()
    polys = sio.mask_to_polygons(m, tolerance=1.0)
    assert len(polys) == 1 and len(polys[0]) % 2 == 0 and len(polys[0]) >= 6
    back = sras.rasterize_polygon(np.asarray(polys[0]).reshape(-1, 2), m.shape)
    assert _iou(back, m) > 0.95
    exact = sio.mask_to_polygons(m, tolerance=0)
    np.testing.assert_array_equal(sras.rasterize_polygon(np.reshape(exact[0], (-1, 2)), m.shape), m)


def test_polygons_keep_outer_contours_only():
    ring = np.zeros((30, 30), bool)
    ring[5:25, 5:25] = True
    ring[10:20, 10:20] = False
    blob = np.zeros((30, 30), bool)
    blob[1, 1] = True
    polys = sio.mask_to_polygons(ring | blob, tolerance=0)
    assert len(polys) == 2  # ring's outer contour and the single pixel; no hole polygon
    xs = np.asarray(max(polys, key=len)).reshape(-1, 2)[:, 0]
    assert xs.min() == 5.0 and xs.max() == 25.0  # edge midpoints in continuous coordinates
    single = sras.rasterize_polygon(np.reshape(min(polys, key=len), (-1, 2)), (30, 30))
    np.testing.assert_array_equal(np.argwhere(single), [[1, 1]])
    assert sio.mask_to_polygons(np.zeros((8, 8), bool)) == []


def test_label_png_uses_voc_palette(tmp_path):
    labels = np.array([[0, 1], [2, 255]], np.int64)
    sio.save_label_png(labels, tmp_path / "l.png")
    with Image.open(tmp_path / "l.png") as img:
        assert img.mode == "P"
        np.testing.assert_array_equal(np.asarray(img), labels)
        pal = np.asarray(img.getpalette()).reshape(-1, 3)
    np.testing.assert_array_equal(pal[:4], [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]])
    np.testing.assert_array_equal(pal[255], [224, 224, 192])
    sio.save_label_png(np.array([[0, 300]]), tmp_path / "big.png")
    np.testing.assert_array_equal(_read_png(tmp_path / "big.png"), [[0, 300]])
    with pytest.raises(ImageError, match="values must be in"):
        sio.save_label_png(np.array([[-1, 0]]), tmp_path / "neg.png")


def test_save_coco_json(tmp_path):
    masks = np.zeros((2, 20, 30), bool)
    masks[0, 2:6, 3:9] = True
    masks[1] = _disk(20, 30, 15, 10, 5)
    records = sio.save_coco_json(tmp_path / "r.json", masks, [0.9, 0.25], ["cat", "dog"], (20, 30),
                                 image_id=7, category_ids=[17, 18])
    loaded = json.loads((tmp_path / "r.json").read_text())
    assert loaded == records
    assert loaded[0]["bbox"] == [3, 2, 6, 4] and loaded[0]["area"] == 24 and loaded[0]["score"] == 0.9
    assert loaded[1]["category_name"] == "dog" and loaded[1]["category_id"] == 18 and loaded[1]["image_id"] == 7
    np.testing.assert_array_equal(sio.rle_to_mask(loaded[1]["segmentation"]), masks[1])
    with pytest.raises(ImageError, match="one score"):
        sio.save_coco_json(tmp_path / "x.json", masks, [0.9], ["cat", "dog"], (20, 30))


# -------------------------------------------------------------------------------------------- overlay
def test_overlay_changes_exactly_the_masked_pixels():
    image = np.full((60, 80, 3), 128, np.uint8)
    masks = np.stack([_disk(60, 80, 25, 30, 12), _disk(60, 80, 60, 30, 10)])
    out = svis.overlay(image, masks, alpha=0.5)
    changed = (out != image).any(axis=2)
    np.testing.assert_array_equal(changed, masks.any(axis=0))
    assert (image == 128).all()  # input untouched
    a, b = out[30, 25], out[30, 60]
    assert not np.array_equal(a, b)  # distinct colours


def test_overlay_draws_labels(astronaut):
    masks = np.zeros((1, 128, 128), bool)
    masks[0, 40:90, 30:100] = True
    plain = svis.overlay(astronaut, masks)
    labelled = svis.overlay(astronaut, masks, labels=["person"], scores=[0.87])
    assert labelled.shape == astronaut.shape and labelled.dtype == np.uint8
    assert (labelled != plain).any(axis=2).sum() > 20  # text was drawn
    assert svis.overlay(astronaut, np.zeros((0, 128, 128), bool)).tolist() == astronaut.tolist()


# -------------------------------------------------------------------------------------- rasterization
def test_rasterize_polygon_square_and_clipping():
    sq = sras.rasterize_polygon(np.array([[2, 3], [6, 3], [6, 8], [2, 8]]), (10, 10))
    expected = np.zeros((10, 10), bool)
    expected[3:8, 2:6] = True
    np.testing.assert_array_equal(sq, expected)
    clipped = sras.rasterize_polygon(np.array([[-5, -5], [4, -5], [4, 4], [-5, 4]]), (10, 10))
    assert clipped.sum() == 16 and clipped[:4, :4].all()
    assert not sras.rasterize_polygon(np.array([[20, 20], [30, 20], [30, 30]]), (10, 10)).any()


def test_rasterize_polyline():
    line = sras.rasterize_polyline(np.array([[5.5, 10.5], [25.5, 10.5]]), (20, 30), width=3)
    assert line[9:12, 6:25].all() and not line[:8].any() and not line[13:].any()
    dot = sras.rasterize_polyline(np.array([[4.5, 4.5]]), (10, 10), width=1)
    np.testing.assert_array_equal(np.argwhere(dot), [[4, 4]])


@pytest.mark.parametrize(
    "func, points, match",
    [
        (sras.rasterize_polygon, [[0, 0], [1, 1]], "at least 3"),
        (sras.rasterize_polygon, [[0, 0], [1, np.nan], [2, 2]], "finite"),
        (sras.rasterize_polyline, np.zeros((0, 2)), "at least 1"),
        (sras.rasterize_polyline, [[0, np.inf]], "finite"),
        (sras.rasterize_polyline, [1, 2, 3], r"\(N, 2\)"),
    ],
)
def test_rasterize_errors(func, points, match):
    with pytest.raises(PromptError, match=match):
        func(points, (10, 10))
