"""Coordinate frames and image preprocessing.

Three frames:

* **original**: the user's image, ``(H, W)``; points are (x, y) pixels, boxes XYXY pixels.
* **resized**: the image after resizing its shorter side (``(h, w)``; PIL bicubic, like the official
  demo's ``Resize(512, BICUBIC)`` and detectron2's ``ResizeShortestEdge`` with a max size).
* **padded model frame**: the resized image normalised with the pixel mean/std, then zero-padded on the
  bottom/right to a multiple of 32 (``(H_pad, W_pad)``; official ``ImageList.from_tensors``). Prompt
  masks live here. Mask logits come out at 1/4 of it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor


def resized_shape(height: int, width: int, shorter_side: int | None, max_size: int | None) -> tuple[int, int]:
    """Output ``(h, w)`` of a shorter-side resize capped at ``max_size`` (detectron2 rounding)."""
    if not shorter_side:
        return height, width
    scale = shorter_side / min(height, width)
    new_h, new_w = height * scale, width * scale
    if max_size and max(new_h, new_w) > max_size:
        scale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return max(1, int(new_h + 0.5)), max(1, int(new_w + 0.5))


@dataclass(frozen=True)
class ImageFrame:
    """Sizes of one image in the three frames, with conversions between them."""

    original_size: tuple[int, int]  # (H, W)
    resized_size: tuple[int, int]  # (h, w)
    padded_size: tuple[int, int]  # (H_pad, W_pad)

    @property
    def lowres_valid_size(self) -> tuple[int, int]:
        """``(ceil(h / 4), ceil(w / 4))``: the cells of 1/4-resolution mask logits that cover the resized image
        (the rest of the ``(H_pad / 4, W_pad / 4)`` grid is padding)."""
        return -(-self.resized_size[0] // 4), -(-self.resized_size[1] // 4)

    @property
    def smaller_than_logit_grid(self) -> bool:
        """Whether the original image has fewer rows or columns than :attr:`lowres_valid_size` (an upscaled tiny
        image): a mask's emptiness must then be judged at the original size, where a few positive low-resolution
        cells can vanish or bicubic overshoot can add pixels."""
        valid = self.lowres_valid_size
        return self.original_size[0] < valid[0] or self.original_size[1] < valid[1]

    @property
    def scale_xy(self) -> tuple[float, float]:
        """Resized / original scale along x and y."""
        return self.resized_size[1] / self.original_size[1], self.resized_size[0] / self.original_size[0]

    def points_to_resized(self, points_xy: np.ndarray) -> np.ndarray:
        """``(N, 2)`` (x, y) original pixels -> resized pixels (float)."""
        sx, sy = self.scale_xy
        return np.asarray(points_xy, dtype=np.float64) * np.array([sx, sy])

    def mask_to_model(self, mask: np.ndarray | Tensor) -> Tensor:
        """``(..., H, W)`` bool original-frame mask -> ``(..., H_pad, W_pad)`` bool model-frame mask.

        Upscaling is nearest-neighbour; downscaling marks every model pixel that covers any prompt pixel
        (area pooling > 0), so thin strokes and single clicks survive. Then zero padding.
        """
        m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask).bool()
        lead = m.shape[:-2]
        m = m.reshape(-1, 1, *m.shape[-2:]).float()
        if tuple(m.shape[-2:]) != self.resized_size:
            shrink = self.resized_size[0] * self.resized_size[1] < m.shape[-2] * m.shape[-1]
            m = F.interpolate(m, size=self.resized_size, mode="area" if shrink else "nearest-exact")
        out = torch.zeros(m.shape[0], 1, *self.padded_size, dtype=torch.bool)
        out[:, :, : self.resized_size[0], : self.resized_size[1]] = m > 0
        return out.reshape(*lead, *self.padded_size)

    def maps_to_original(self, x: Tensor) -> Tensor:
        """``(C, h, w)`` maps (labels, segment ids, masks) at a work size -> ``(C, H, W)`` float at the original size,
        nearest; ``x`` itself when already there."""
        if tuple(x.shape[-2:]) == self.original_size:
            return x
        return F.interpolate(x[None].float(), size=self.original_size, mode="nearest")[0]

    def logits_to_original(self, logits_lowres: Tensor, mode: str = "bilinear", antialias: bool = True) -> Tensor:
        """``(K, H_pad/4, W_pad/4)`` mask logits -> ``(K, H, W)`` float32 logits in the original frame.

        Upsample to the padded size with ``mode``, crop the padding, resize to the original size with
        bicubic interpolation. The official paths differ in the details, so both are offered:
        ``evaluate``/``evaluate_grounding`` upsample bilinearly and resize with antialiasing
        (``sem_seg_postprocess``); ``evaluate_interactive_single`` upsamples and resizes bicubically
        without antialiasing (``mode="bicubic", antialias=False``).

        Every step is linear and separable, so the whole chain is one ``(H, H_pad/4)`` matrix for the rows
        and one ``(W, W_pad/4)`` for the columns (:func:`resampling_matrix`, built by ``F.interpolate`` itself
        and cached per size): two banded matrix products (:mod:`seem.banded`) instead of interpolating at the
        padded size, with the same values up to float rounding.
        """
        from seem.banded import left_product, right_product

        rows, cols = self.resampling_matrices((logits_lowres.shape[-2], logits_lowres.shape[-1]), mode, antialias)
        if logits_lowres.device.type != "cpu":
            return rows.to(logits_lowres.device) @ logits_lowres.float() @ cols.to(logits_lowres.device)
        # the matrices are banded: block products skip their zeros (seem.banded)
        return right_product(left_product(rows, logits_lowres.float()), cols)

    def resampling_matrices(self, lowres_size: tuple[int, int], mode: str = "bilinear",
                            antialias: bool = True) -> tuple[Tensor, Tensor]:
        """The two float32 matrices of :meth:`logits_to_original` for ``(h, w)`` low-res logits: rows ``(H, h)``
        and columns ``(w, W)`` (cached, CPU), so that ``rows @ logits @ cols`` is the original-frame map."""
        rows = resampling_matrix(lowres_size[0], self.padded_size[0], self.resized_size[0], self.original_size[0],
                                 mode, antialias)
        cols = resampling_matrix(lowres_size[1], self.padded_size[1], self.resized_size[1], self.original_size[1],
                                 mode, antialias, transposed=True)
        return rows, cols


def _interpolation_matrix(n_in: int, n_out: int, mode: str, antialias: bool) -> Tensor:
    """``(n_out, n_in)``: what ``F.interpolate(..., mode, align_corners=False, antialias)`` does along one axis,
    read off by interpolating the ``n_in`` unit vectors (the height axis stays 1 -> 1, which is exact)."""
    basis = torch.eye(n_in).view(1, n_in, 1, n_in)
    out = F.interpolate(basis, size=(1, n_out), mode=mode, align_corners=False, antialias=antialias)
    return out[0, :, 0, :].t().contiguous()


@functools.lru_cache(maxsize=32)
def resampling_matrix(n_low: int, n_pad: int, n_resized: int, n_original: int, mode: str, antialias: bool,
                      transposed: bool = False) -> Tensor:
    """``(n_original, n_low)`` float32 matrix (``transposed``: ``(n_low, n_original)``, contiguous) of one axis of :meth:`ImageFrame.logits_to_original`: upsample
    ``n_low -> n_pad`` with ``mode``, keep the first ``n_resized``, then bicubic to ``n_original`` (with
    ``antialias``; none when the sizes are equal). Cached (a few hundred KB each)."""
    m = _interpolation_matrix(n_low, n_pad, mode, False)[:n_resized]
    if n_resized != n_original:
        m = _interpolation_matrix(n_resized, n_original, "bicubic", antialias) @ m
    return m.t().contiguous() if transposed else m


def plan_frame(original_size: tuple[int, int], shorter_side: int | None, max_size: int | None, divisor: int) -> ImageFrame:
    """The :class:`ImageFrame` for an image of ``original_size`` ``(H, W)``."""
    h, w = resized_shape(original_size[0], original_size[1], shorter_side, max_size)
    hp, wp = -(-h // divisor) * divisor, -(-w // divisor) * divisor
    return ImageFrame((original_size[0], original_size[1]), (h, w), (hp, wp))


def preprocess_image(
    image: np.ndarray, frame: ImageFrame, pixel_mean: Tensor, pixel_std: Tensor
) -> Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(1, 3, H_pad, W_pad)`` float32: resize, normalise, zero-pad.

    ``pixel_mean``/``pixel_std`` are ``(3, 1, 1)`` in 0-255 units. Padding is applied after
    normalisation (zeros), as ``ImageList.from_tensors`` does.
    """
    if tuple(image.shape[:2]) != frame.resized_size:
        image = np.asarray(Image.fromarray(image).resize(frame.resized_size[::-1], Image.Resampling.BICUBIC))
    x = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float()
    x = (x - pixel_mean.to(x)) / pixel_std.to(x)
    out = torch.zeros(1, 3, *frame.padded_size)
    out[0, :, : x.shape[1], : x.shape[2]] = x
    return out
