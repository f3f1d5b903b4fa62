"""Multi-scale deformable-attention pixel decoder (Mask2Former, Cheng et al. 2022, sec. 4), used by SEEM SAM-ViT.

Follows the official ``modeling/vision/encoder/transformer_encoder_deform.py::MSDeformAttnPixelDecoder``
(``forward_features``), with the deformable attention of :mod:`seem.modeling.ms_deform_attn` (no compiled op).
Parameter names equal the official ``sem_seg_head.pixel_decoder.*`` keys without that prefix:
``input_proj.{l}.{0: conv, 1: GroupNorm}``, ``transformer.level_embed``,
``transformer.encoder.layers.{i}.{self_attn.*, linear1, linear2, norm1, norm2}``, ``adapter_1``, ``layer_1``,
``mask_features``.

Data flow for backbone outputs ``res2..res5`` (strides 4..32)::

    res5, res4, res3 -> input_proj (1x1 + GN(32)) = levels 0, 1, 2 (1/32, 1/16, 1/8)
      -> + sine PE + level_embed, flattened row-major and concatenated
      -> deformable encoder layers (post-norm; FFN ReLU)  -> split back = multi_scale_features [1/32, 1/16, 1/8]
    res2 -> adapter_1 (1x1 + GN) + bilinear-up(1/8 level) -> layer_1 (3x3 + GN + ReLU)
      -> mask_features (1x1 conv with bias) = (B, mask_dim, H/4, W/4)

The official forward is wrapped in ``autocast(enabled=False)``; here it follows the caller's autocast (the
sampler keeps coordinates in float32 either way).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seem.configs import PixelDecoderConfig
from seem.modeling.ms_deform_attn import MSDeformAttn
from seem.modeling.packed_linear import Linear
from seem.modeling.pixel_decoder import ConvNormAct, PixelDecoderOutput
from seem.modeling.position_encoding import PositionEmbeddingSine

_NUM_LEVELS = 3  # official DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES: res3, res4, res5
_FFN_DIM = 1024  # official from_config hard-codes the deformable encoder's FFN width


class MSDeformEncoderLayer(nn.Module):
    """``src = norm1(src + attn(src + pos, ref, src))``; ``src = norm2(src + linear2(relu(linear1(src))))``
    (official ``MSDeformAttnTransformerEncoderLayer``; dropout 0)."""

    def __init__(self, d_model: int, dim_feedforward: int, num_heads: int, num_points: int) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, _NUM_LEVELS, num_heads, num_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = Linear(d_model, dim_feedforward)
        self.linear2 = Linear(dim_feedforward, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: Tensor, pos: Tensor, reference_points: Tensor, sizes: list[tuple[int, int]]) -> Tensor:
        """``src``, ``pos`` ``(N, S, C)``; ``reference_points (N, S, levels, 2)`` -> ``(N, S, C)``."""
        src = self.norm1(src + self.self_attn(src + pos, reference_points, src, sizes))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class MSDeformEncoderStack(nn.Module):
    """Holds ``layers`` (official ``MSDeformAttnTransformerEncoder``)."""

    def __init__(self, layers: list[MSDeformEncoderLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)


class MSDeformEncoder(nn.Module):
    """The stack of :class:`MSDeformEncoderLayer` under ``encoder.layers`` plus ``level_embed`` (official
    ``MSDeformAttnTransformerEncoderOnly``)."""

    def __init__(self, config: PixelDecoderConfig, dim_feedforward: int) -> None:
        super().__init__()
        d = config.conv_dim
        self.level_embed = nn.Parameter(torch.empty(_NUM_LEVELS, d))
        self.encoder = MSDeformEncoderStack([
            MSDeformEncoderLayer(d, dim_feedforward, config.num_heads, config.num_points)
            for _ in range(config.num_encoder_layers)
        ])
        for p in self.encoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for module in self.modules():
            if isinstance(module, MSDeformAttn):
                module._reset_parameters()
        nn.init.normal_(self.level_embed)

    @staticmethod
    def reference_points(sizes: list[tuple[int, int]], device: torch.device) -> Tensor:
        """``(1, S, levels, 2)``: the centre ``((x + 0.5) / w_l, (y + 0.5) / h_l)`` of every token, repeated for
        every level (official ``get_reference_points`` with valid ratios 1)."""
        points = []
        for h, w in sizes:
            y, x = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, device=device),
                                  torch.linspace(0.5, w - 0.5, w, device=device), indexing="ij")
            points.append(torch.stack((x.reshape(-1) / w, y.reshape(-1) / h), -1))
        ref = torch.cat(points, 0)
        return ref[None, :, None].expand(1, ref.shape[0], len(sizes), 2)

    def forward(self, levels: list[Tensor], pos: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """``levels``/``pos``: ``(N, C, h_l, w_l)`` each -> (every layer's ``(N, S, C)`` output, the last one split
        back into ``(N, C, h_l, w_l)`` maps)."""
        sizes = [(t.shape[-2], t.shape[-1]) for t in levels]
        src = torch.cat([t.flatten(2).transpose(1, 2) for t in levels], 1)
        pos_flat = torch.cat([p.flatten(2).transpose(1, 2) + self.level_embed[i].view(1, 1, -1).to(p.dtype)
                              for i, p in enumerate(pos)], 1)
        ref = self.reference_points(sizes, src.device)
        outs = []
        for layer in self.encoder.layers:
            src = layer(src, pos_flat, ref, sizes)
            outs.append(src)
        n, _, c = src.shape
        maps = [m.transpose(1, 2).reshape(n, c, h, w) for m, (h, w) in zip(src.split([h * w for h, w in sizes], 1), sizes)]
        return outs, maps


class MSDeformAttnPixelDecoder(nn.Module):
    """Deformable-attention pixel decoder.

    Args:
        config: ``config.in_channels`` are the channels of ``res2..res5``; ``conv_dim`` the encoder width
            (GroupNorm(32) needs it divisible by 32), ``num_heads``/``num_points``/``num_encoder_layers`` the
            deformable encoder's, ``mask_dim`` the per-pixel embedding width; ``dim_feedforward`` is ignored
            (the official code hard-codes 1024).

    ``forward({"res2": (B, C0, H/4, W/4), ..., "res5": (B, C3, H/32, W/32)})`` returns a
    :class:`~seem.modeling.pixel_decoder.PixelDecoderOutput` (``transformer_encoder_features`` = the 1/32 level).

    Raises:
        ValueError: not 4 input levels, or ``conv_dim`` not divisible by 32 / by 2.
    """

    def __init__(self, config: PixelDecoderConfig) -> None:
        super().__init__()
        if len(config.in_channels) != 4:
            raise ValueError(f"MSDeformAttnPixelDecoder needs res2..res5, got {len(config.in_channels)} levels")
        if config.conv_dim % 32:
            raise ValueError("MSDeformAttnPixelDecoder: GroupNorm(32) needs conv_dim divisible by 32")
        dim = config.conv_dim
        self.in_features = ["res5", "res4", "res3"]  # transformer levels, coarse to fine
        self.input_proj = nn.ModuleList()
        for channels in reversed(config.in_channels[1:]):
            conv = nn.Conv2d(channels, dim, kernel_size=1)
            nn.init.xavier_uniform_(conv.weight, gain=1)
            nn.init.zeros_(conv.bias)  # type: ignore[arg-type]
            self.input_proj.append(nn.Sequential(conv, nn.GroupNorm(32, dim)))
        self.transformer = MSDeformEncoder(config, _FFN_DIM)
        self.pe_layer = PositionEmbeddingSine(dim // 2, normalize=True)
        self.adapter_1 = ConvNormAct(config.in_channels[0], dim, 1, norm=config.norm, relu=False)
        self.layer_1 = ConvNormAct(dim, dim, 3, norm=config.norm, relu=True)
        self.mask_features = nn.Conv2d(dim, config.mask_dim, kernel_size=1)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.zeros_(self.mask_features.bias)  # type: ignore[arg-type]

    def encode(self, features: dict[str, Tensor]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """(projected levels, every encoder layer's flat output, the multi-scale maps [1/32, 1/16, 1/8])."""
        missing = [k for k in ("res2", *self.in_features) if k not in features]
        if missing:
            raise KeyError(f"MSDeformAttnPixelDecoder: missing input features {missing}")
        levels = [proj(features[name]) for proj, name in zip(self.input_proj, self.in_features)]
        pos = [self.pe_layer(t) for t in levels]
        outs, maps = self.transformer(levels, pos)
        return levels, outs, maps

    def forward(self, features: dict[str, Tensor]) -> PixelDecoderOutput:
        """See the class docstring; extra keys in ``features`` are ignored."""
        _, _, maps = self.encode(features)
        lateral = self.adapter_1(features["res2"])
        y = lateral + F.interpolate(maps[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
        y = self.layer_1(y)
        return PixelDecoderOutput(mask_features=self.mask_features(y), transformer_encoder_features=maps[0],
                                  multi_scale_features=maps)


__all__ = ["MSDeformAttnPixelDecoder", "MSDeformEncoder", "MSDeformEncoderLayer"]
