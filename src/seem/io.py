"""Images and masks in: decoding with clear errors; masks and label maps out as PNG.

Mask encodings (COCO RLE, polygons, XYWH boxes, COCO-results JSON) live in :mod:`seem.mask_codecs` and are
re-exported here.

Overlays live in :mod:`seem.visualize`; rasterising polygon and scribble prompts in :mod:`seem.rasterize`.

Frames. Arrays are row-major: a mask ``(H, W)`` is indexed ``mask[y, x]``. Coordinates ``(x, y)`` are
*continuous* pixel coordinates of the original image, COCO style: pixel ``(col, row)`` covers
``[col, col + 1) x [row, row + 1)`` and its centre is ``(col + 0.5, row + 0.5)``. Boxes given as prompts
are XYXY; boxes written to files are COCO XYWH.

Optional extras: ``pycocotools`` (RLE) and ``scikit-image`` (polygons) are imported on first use.
"""

from __future__ import annotations

import contextlib
import io as _io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from seem.errors import ImageError
from seem.mask_codecs import (  # noqa: F401  (re-exported: seem.io is where users look for them)
    _as_mask,
    _prepare_path,
    mask_to_bbox,
    mask_to_polygons,
    mask_to_rle,
    rle_to_mask,
    save_coco_json,
)

ImageSource = str | Path | bytes | np.ndarray | Image.Image

DEFAULT_MAX_PIXELS = 50_000_000
_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


# ----------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------
def _describe(source: object) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, np.ndarray):
        return f"<array {source.dtype} {tuple(source.shape)}>"
    return f"<{type(source).__name__}>"


def _check_size(width: int, height: int, name: str, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: image has a zero dimension ({width}x{height} WxH)")
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: image is {width}x{height} = {width * height:,} pixels, more than "
            f"max_pixels={max_pixels:,}; downscale it first or pass a larger max_pixels"
        )


@contextlib.contextmanager
def _opened(source: str | Path | bytes, max_pixels: int) -> Iterator[Image.Image]:
    """Open a file or encoded bytes, check the header size *before* decoding, decode, apply EXIF."""
    name = _describe(source)
    if isinstance(source, (str, Path)):
        if str(source).startswith(("http://", "https://")):
            raise ImageError(f"{name}: URLs are not fetched; download the file first")
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{name}: file not found")
        if path.is_dir():
            raise ImageError(f"{name}: is a directory, not an image file")
        if path.stat().st_size == 0:
            raise ImageError(f"{name}: file is empty (0 bytes)")
        fp: Path | _io.BytesIO = path
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError("<0 bytes>: no image data (empty bytes)")
        fp = _io.BytesIO(bytes(source))
    else:
        raise ImageError(f"{name}: expected a path, bytes, a numpy array or a PIL image")

    # PIL's own bomb check uses a process-wide limit; we silence its warning and apply ours per call.
    # Its hard error (above 2 x Image.MAX_IMAGE_PIXELS) still wins if max_pixels is set above that.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(fp)
        except Image.DecompressionBombError as exc:
            raise ImageError(f"{name}: too many pixels to decode safely ({exc})") from None
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not an image, or a format Pillow cannot read") from None
        except OSError as exc:
            raise ImageError(f"{name}: cannot be read ({exc})") from None
        try:
            _check_size(img.width, img.height, name, max_pixels)
            _decode(img, name)
        except BaseException:
            img.close()
            raise
    try:
        yield _exif_upright(img)
    finally:
        img.close()


def _decode(img: Image.Image, name: str) -> None:
    """Decode the pixels now, so corrupt or truncated data fails here with a clear message."""
    try:
        img.load()
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: too many pixels to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise ImageError(f"{name}: corrupt or truncated image data ({exc})") from None


def _exif_upright(img: Image.Image) -> Image.Image:
    """Rotate/flip as the EXIF orientation tag says; a broken EXIF block is ignored, not fatal."""
    try:
        return ImageOps.exif_transpose(img) or img
    except (OSError, ValueError, KeyError, TypeError, SyntaxError):
        return img


def _array_to_rgb(a: np.ndarray, name: str) -> np.ndarray:
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 3, 4):
        raise ImageError(f"{name}: looks channels-first {a.shape}; pass image.transpose(1, 2, 0)")
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise ImageError(f"{name}: expected shape (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")
    if a.dtype == np.bool_:
        raise ImageError(f"{name}: a bool array is a mask, not an image; use load_mask()")
    if a.dtype != np.uint8:
        if a.size and a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ImageError(f"{name}: {a.dtype} array contains NaN or infinite values")
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if a.dtype.kind == "f" and lo >= 0 and hi <= 1:
            hint = "(image * 255).round().astype(np.uint8)"
        elif lo >= 0 and hi <= 255:
            hint = "image.round().astype(np.uint8)" if a.dtype.kind == "f" else "image.astype(np.uint8)"
        else:
            hint = "a rescale to [0, 255] and .astype(np.uint8)"
        raise ImageError(
            f"{name}: expected a uint8 array, got {a.dtype} with values in [{lo:g}, {hi:g}]; "
            f"convert it with {hint}"
        )
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]  # drop alpha
    if a.ndim == 2 or a.shape[2] == 1:
        a = np.repeat(a.reshape(a.shape[0], a.shape[1], 1), 3, axis=2)
    return np.ascontiguousarray(a)


def _pil_to_rgb(img: Image.Image, name: str) -> np.ndarray:
    if img.mode in _16BIT_MODES:
        a = np.asarray(img).astype(np.int64)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ImageError(
                f"{name}: {img.mode} image with values in [{a.min()}, {a.max()}] is not 8 or 16 bit; "
                "convert it to 8-bit RGB first"
            )
        gray = ((a * 255 + 32767) // 65535).astype(np.uint8)  # 16 -> 8 bit, rounded
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if img.mode == "F":
        return _array_to_rgb(np.asarray(img), name)  # raises with a conversion hint
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    try:
        rgb = img if img.mode == "RGB" else img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageError(f"{name}: unsupported image mode {img.mode!r} ({exc})") from None
    return np.array(rgb, dtype=np.uint8)


def is_rgb_uint8(image) -> bool:
    """Whether ``image`` already is a non-empty ``(H, W, 3)`` uint8 array (no decoding or conversion needed)."""
    return isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 \
        and image.shape[0] > 0 and image.shape[1] > 0


def load_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image as ``(H, W, 3)`` uint8 RGB, upright per its EXIF orientation.

    Args:
        source: a file path, encoded bytes (PNG, JPEG, ...), a PIL image, or a uint8 array ``(H, W)``,
            ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (alpha dropped). 16-bit files are scaled to
            8 bit; palette, gray, LA, CMYK images are converted to RGB.
        max_pixels: refuse larger images; checked from the file header before any pixel is decoded.

    Raises:
        ImageError: naming the source and the problem (missing, empty, not an image, corrupt or
            truncated, too large, zero-sized, wrong array shape or dtype).
    """
    if isinstance(source, np.ndarray):
        name = _describe(source)
        rgb = _array_to_rgb(source, name)
        _check_size(rgb.shape[1], rgb.shape[0], name, max_pixels)
        return rgb
    if isinstance(source, Image.Image):
        name = _describe(source)
        _check_size(source.width, source.height, name, max_pixels)
        _decode(source, name)
        return _pil_to_rgb(_exif_upright(source), name)
    with _opened(source, max_pixels) as img:
        return _pil_to_rgb(img, _describe(source))


def _alpha_or_none(a: np.ndarray) -> np.ndarray | None:
    """The alpha channel of an ``(H, W, 2|4)`` array if it marks anything transparent, else None."""
    if a.ndim != 3 or a.shape[2] not in (2, 4) or a.size == 0:
        return None
    alpha = a[..., -1]
    lo, hi = alpha.min(), alpha.max()
    return alpha if (lo < hi or hi == 0) else None


def _array_to_mask(a: np.ndarray, name: str) -> np.ndarray:
    if a.dtype.kind not in "biuf":
        raise ImageError(f"{name}: expected a bool or numeric mask array, got {a.dtype}")
    if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
        raise ImageError(f"{name}: mask contains NaN or infinite values")
    if a.ndim == 3 and a.shape[2] in (1, 2, 3, 4):
        alpha = _alpha_or_none(a)
        if alpha is not None:
            return np.ascontiguousarray(alpha != 0)
        # any() over an axis of a 3-D array is a 2-D array (numpy's stubs also allow a scalar)
        a = cast(np.ndarray, (a[..., :1] if a.shape[2] <= 2 else a[..., :3]).any(axis=2))
    if a.ndim != 2:
        raise ImageError(f"{name}: expected a mask of shape (H, W) or (H, W, C), got {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(f"{name}: mask has a zero dimension {a.shape}")
    return np.ascontiguousarray(a != 0)


def _pil_to_mask(img: Image.Image, name: str) -> np.ndarray:
    if img.mode == "P" and "transparency" in img.info:
        alpha = _alpha_or_none(np.asarray(img.convert("RGBA")))
        if alpha is not None:
            return alpha != 0
    if img.mode in ("YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    return _array_to_mask(np.asarray(img), name)  # "P": nonzero palette index (0 = background)


def load_mask(
    source: ImageSource, size: tuple[int, int] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Read a binary mask as ``(H, W)`` bool: True where any channel is nonzero.

    Images with a (not fully opaque) alpha channel use ``alpha > 0``, so canvas exports with a
    transparent background work; palette PNGs use ``index != 0``. Arrays (bool, integer, float) use
    ``!= 0``; threshold probability maps yourself first. An all-False mask is returned as is.

    Args:
        size: ``(H, W)`` of the image the mask belongs to; a different mask size raises ImageError.
    """
    name = _describe(source)
    if isinstance(source, np.ndarray):
        mask = _array_to_mask(source, name)
    elif isinstance(source, Image.Image):
        _decode(source, name)
        mask = _pil_to_mask(_exif_upright(source), name)
    else:
        with _opened(source, max_pixels) as img:
            mask = _pil_to_mask(img, name)
    if size is not None and tuple(mask.shape) != (int(size[0]), int(size[1])):
        raise ImageError(
            f"{name}: mask is {mask.shape[0]}x{mask.shape[1]} (HxW) but the image is "
            f"{int(size[0])}x{int(size[1])} (HxW); they must match"
        )
    return mask


# ----------------------------------------------------------------------------------------------------
# Writing and encodings
# ----------------------------------------------------------------------------------------------------
def save_mask_png(mask: np.ndarray, path: str | Path) -> Path:
    """Write an ``(H, W)`` bool mask as an 8-bit gray PNG (0 = background, 255 = mask)."""
    m = _as_mask(mask)
    path = _prepare_path(path)
    Image.fromarray(m.astype(np.uint8) * 255, mode="L").save(path, format="PNG")
    return path


def voc_palette() -> np.ndarray:
    """The PASCAL VOC / DAVIS colour map: ``(256, 3)`` uint8, index 0 black, 1 (128, 0, 0), ..."""
    idx = np.arange(256)
    pal = np.zeros((256, 3), dtype=np.int64)
    for bit in range(8):
        for ch in range(3):
            pal[:, ch] |= ((idx >> (3 * bit + ch)) & 1) << (7 - bit)
    return pal.astype(np.uint8)


def save_label_png(label_map: np.ndarray, path: str | Path) -> Path:
    """Write an ``(H, W)`` integer label map (0 = background / void) as a PNG.

    Values 0..255 give a palette PNG with the VOC/DAVIS colours (what VOS and VOC tools read);
    larger values (up to 65535) give a 16-bit gray PNG.
    """
    labels = np.asarray(label_map)
    if labels.ndim != 2 or labels.dtype.kind not in "iub":
        raise ImageError(f"label map: expected an integer (H, W) array, got {labels.dtype} {labels.shape}")
    lo, hi = (int(labels.min()), int(labels.max())) if labels.size else (0, 0)
    if lo < 0 or hi > 65535:
        raise ImageError(f"label map: values must be in [0, 65535], got [{lo}, {hi}]")
    path = _prepare_path(path)
    if hi <= 255:
        img = Image.fromarray(labels.astype(np.uint8), mode="P")
        img.putpalette(voc_palette().ravel().tolist())
    else:
        img = Image.fromarray(labels.astype(np.uint16))
    img.save(path, format="PNG")
    return path
