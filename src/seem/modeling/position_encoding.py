"""2-D sine positional encoding (DETR / Mask2Former style).

Follows the official SEEM ``modeling/modules/position_encoding.py::PositionEmbeddingSine``, which is the
Mask2Former variant *without* the ``-0.5`` centre offset: the row/column index is the inclusive cumulative
count of valid pixels (1..H, 1..W), divided by the last count (plus ``1e-6``) and multiplied by ``scale``.
Used by the pixel decoder's transformer encoder and by the SEEM decoder.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PositionEmbeddingSine(nn.Module):
    """Fixed sine/cosine encoding of pixel positions.

    Args:
        num_pos_feats: channels per axis; the output has ``2 * num_pos_feats`` channels (y first, then x).
        temperature: base of the geometric frequency progression.
        normalize: divide positions by the (valid) extent and multiply by ``scale`` (positions in ``(0, scale]``).
        scale: only with ``normalize``; defaults to ``2 * pi``.

    Channel layout of each half: frequency ``k = c // 2``, ``sin`` on even ``c``, ``cos`` on odd ``c``.
    """

    def __init__(
        self,
        num_pos_feats: int = 64,
        temperature: float = 10000,
        normalize: bool = True,
        scale: float | None = None,
    ) -> None:
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("PositionEmbeddingSine: `scale` requires normalize=True")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Encode the positions of ``x``'s grid.

        Args:
            x: ``(B, C, H, W)``; only its shape, dtype and device are used.
            mask: optional ``(B, H, W)`` bool, ``True`` = padding (excluded from the position count).

        Returns:
            ``(B, 2 * num_pos_feats, H, W)`` in ``x.dtype``; channels ``[0, num_pos_feats)`` encode y,
            the rest encode x.
        """
        b, _, h, w = x.shape
        if mask is None:
            mask = torch.zeros((b, h, w), dtype=torch.bool, device=x.device)
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=x.dtype)  # 1..H down each column
        x_embed = not_mask.cumsum(2, dtype=x.dtype)  # 1..W along each row
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale

        dim_t = torch.arange(self.num_pos_feats, dtype=x.dtype, device=x.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)

        pos_x = x_embed[..., None] / dim_t  # (B, H, W, F)
        pos_y = y_embed[..., None] / dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return (
            f"num_pos_feats={self.num_pos_feats}, temperature={self.temperature}, "
            f"normalize={self.normalize}, scale={self.scale}"
        )
