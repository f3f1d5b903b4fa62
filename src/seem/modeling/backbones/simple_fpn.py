"""SimpleFPN: the neck that turns the ViT's single 1/16 map into ``res2..res5`` (ViTDet, Li et al. 2022, sec. 3).

Follows the official SEEM ``modeling/vision/backbone/vit.py::SimpleFPN`` (module names ``down_4``, ``down_8``,
``down_16``, ``down_32``; indices as in the official ``nn.Sequential``\\ s, so checkpoints load by name). Every
normalisation is ``GroupNorm(1, C)`` (over C, H, W jointly), every activation exact GELU::

    down_4  (res2): ConvT(D, c4, 2, s2) GN GELU ConvT(c4, c4/2, 2, s2) GN Conv1x1(c4/2, out0) GN GELU,
                    c4 = max(2 * out0, D / 2)   (no GELU after the second GroupNorm)
    down_8  (res3): ConvT(D, c8, 2, s2) GN Conv1x1(c8, out1) GN GELU,              c8 = max(out1, D / 2)
    down_16 (res4): Conv1x1(D, out2) GN GELU
    down_32 (res5): Conv(D, c32, 2, s2) GN Conv1x1(c32, out3) GN GELU,             c32 = max(out3, 2 * D)
"""

from __future__ import annotations

from torch import Tensor, nn


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(1, channels)


class SimpleFPN(nn.Module):
    """``forward(x (B, D, h, w)) -> {"res2": (B, out0, 4h, 4w), "res3": (B, out1, 2h, 2w), "res4": (B, out2, h, w),
    "res5": (B, out3, h/2, w/2)}``; ``h``, ``w`` even.

    Args:
        in_dim: ``D``, the ViT width.
        out_dims: ``(out0, out1, out2, out3)`` (official: 128, 256, 512, 1024).
    """

    def __init__(self, in_dim: int, out_dims: tuple[int, ...]) -> None:
        super().__init__()
        if len(out_dims) != 4:
            raise ValueError(f"SimpleFPN needs 4 output widths (res2..res5), got {tuple(out_dims)}")
        out0, out1, out2, out3 = out_dims
        c4, c8, c32 = max(2 * out0, in_dim // 2), max(out1, in_dim // 2), max(out3, 2 * in_dim)
        self.down_4 = nn.Sequential(
            nn.ConvTranspose2d(in_dim, c4, 2, stride=2), _norm(c4), nn.GELU(),
            nn.ConvTranspose2d(c4, c4 // 2, 2, stride=2), _norm(c4 // 2),
            nn.Conv2d(c4 // 2, out0, 1), _norm(out0), nn.GELU(),
        )
        self.down_8 = nn.Sequential(
            nn.ConvTranspose2d(in_dim, c8, 2, stride=2), _norm(c8),
            nn.Conv2d(c8, out1, 1), _norm(out1), nn.GELU(),
        )
        self.down_16 = nn.Sequential(nn.Conv2d(in_dim, out2, 1), _norm(out2), nn.GELU())
        self.down_32 = nn.Sequential(
            nn.Conv2d(in_dim, c32, 2, stride=2), _norm(c32),
            nn.Conv2d(c32, out3, 1), _norm(out3), nn.GELU(),
        )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """See the class docstring."""
        return {"res2": self.down_4(x), "res3": self.down_8(x), "res4": self.down_16(x), "res5": self.down_32(x)}
