"""Transformer-encoder + FPN pixel decoder (MaskFormer style), used by SEEM Focal-T / Focal-L / DaViT.

Follows the official ``modeling/vision/encoder/transformer_encoder_fpn.py::TransformerEncoderPixelDecoder``
(``forward_features``). Parameter names equal the official ``sem_seg_head.pixel_decoder.*`` keys without that
prefix: ``input_proj``, ``transformer.encoder.layers.{i}.{self_attn, linear1, linear2, norm1, norm2}``,
``adapter_{1..n-1}`` / ``layer_{1..n}`` (detectron2-style conv with a ``norm`` child), ``mask_features``.

Data flow for inputs ``res2..res5`` (strides 4..32)::

    res5 -> input_proj (1x1) -> transformer encoder (+ sine PE) = transformer_encoder_features
         -> layer_4 (3x3 + GN + ReLU)                            = y (1/32)
    res4 -> adapter_3 (1x1 + GN) + nearest-up(y) -> layer_3    = y (1/16)
    res3 -> adapter_2 ...                        -> layer_2    = y (1/8)
    res2 -> adapter_1 ...                        -> layer_1    = y (1/4) -> mask_features (3x3, bias)
    multi_scale_features = the first three y's: [1/32, 1/16, 1/8]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seem.configs import PixelDecoderConfig
from seem.modeling.layers import MultiheadAttention
from seem.modeling.mask_position import MaskPositionEncoding
from seem.modeling.packed_linear import Linear
from seem.modeling.position_encoding import PositionEmbeddingSine

_NUM_MULTI_SCALE = 3  # official ``maskformer_num_feature_levels``: always 3 scales


@dataclass(frozen=True)
class PixelDecoderOutput:
    """Outputs of the pixel decoder for a padded batch of size ``B`` and padded size ``(H, W)``.

    Attributes:
        mask_features: ``(B, mask_dim, H/4, W/4)`` float; per-pixel embeddings dotted with mask embeddings.
        transformer_encoder_features: ``(B, conv_dim, H/32, W/32)`` float; transformer-encoder output on res5
            (before ``layer_4``).
        multi_scale_features: three ``(B, conv_dim, h_l, w_l)`` maps ordered ``[1/32, 1/16, 1/8]`` (FPN outputs
            of ``layer_4``, ``layer_3``, ``layer_2``); the decoder cross-attends to them in this order.
    """

    mask_features: Tensor
    transformer_encoder_features: Tensor
    multi_scale_features: list[Tensor]


class ConvNormAct(nn.Conv2d):
    """A 2-D conv followed by an optional ``norm`` child module and an optional ReLU (detectron2 ``Conv2d``).

    Subclasses :class:`torch.nn.Conv2d` so the conv's own parameters are named ``weight``/``bias`` and the norm's
    ``norm.weight``/``norm.bias``, exactly as in detectron2 checkpoints.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        norm: str,
        relu: bool,
    ) -> None:
        use_norm = _norm_enabled(norm)
        super().__init__(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not use_norm
        )
        self.norm = nn.GroupNorm(32, out_channels) if use_norm else None
        self.relu = relu
        _c2_xavier_fill(self)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W)`` -> ``(B, C_out, H, W)``."""
        return self.activate(super().forward(x))

    def activate(self, y: Tensor) -> Tensor:
        """The norm and ReLU after the conv (also run after a Winograd conv: :mod:`seem.modeling.winograd`)."""
        if self.norm is not None:
            y = self.norm(y)
        return F.relu(y) if self.relu else y


class TransformerEncoderLayer(nn.Module):
    """DETR encoder layer (official ``transformer_blocks.TransformerEncoderLayer``), sequence-first.

    Self-attention uses ``q = k = src + pos`` and ``v = src``; post-norm unless ``pre_norm``. FFN activation is
    ReLU; dropout is omitted (official ``DROPOUT: 0.0``; identity at inference anyway).
    """

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int, pre_norm: bool) -> None:
        super().__init__()
        # nn.MultiheadAttention's parameters; projections on packed weights, fused attention
        self.self_attn = MultiheadAttention(d_model, num_heads)
        self.linear1 = Linear(d_model, dim_feedforward)
        self.linear2 = Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.pre_norm = pre_norm

    def _attend(self, x: Tensor, pos: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        qk = x + pos
        # padded keys blocked for every query and head: (B, 1, 1, L), True = blocked
        blocked = None if key_padding_mask is None else key_padding_mask[:, None, None, :]
        return self.self_attn(qk, qk, x, blocked)

    def _ffn(self, x: Tensor) -> Tensor:
        return self.linear2(F.relu(self.linear1(x)))

    def forward(self, src: Tensor, pos: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """``src``, ``pos``: ``(L, B, D)``; ``key_padding_mask``: ``(B, L)`` bool or ``None`` -> ``(L, B, D)``."""
        if self.pre_norm:
            src = src + self._attend(self.norm1(src), pos, key_padding_mask)
            return src + self._ffn(self.norm2(src))
        src = self.norm1(src + self._attend(src, pos, key_padding_mask))
        return self.norm2(src + self._ffn(src))


class TransformerEncoderStack(nn.Module):
    """``layers`` applied in turn, then a final LayerNorm ``norm`` only with pre-norm (official ``TransformerEncoder``)."""

    def __init__(self, config: PixelDecoderConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(config.conv_dim, config.num_heads, config.dim_feedforward, config.pre_norm)
            for _ in range(config.num_encoder_layers)
        )
        self.norm = nn.LayerNorm(config.conv_dim) if config.pre_norm else None

    def forward(self, src: Tensor, pos: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """``src``, ``pos``: ``(L, B, D)`` -> ``(L, B, D)``."""
        for layer in self.layers:
            src = layer(src, pos, key_padding_mask)
        return src if self.norm is None else self.norm(src)


class TransformerEncoderOnly(nn.Module):
    """Runs the encoder stack on a feature map (official ``TransformerEncoderOnly``); holds ``encoder``."""

    def __init__(self, config: PixelDecoderConfig) -> None:
        super().__init__()
        self.encoder = TransformerEncoderStack(config)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: Tensor, pos: Tensor, mask: Tensor | None = None) -> Tensor:
        """``src``, ``pos``: ``(B, D, h, w)``; ``mask``: ``(B, h, w)`` bool (``True`` = padding) -> ``(B, D, h, w)``."""
        b, c, h, w = src.shape
        # contiguous: a strided (L, B, D) input makes bf16 linears fall back to a weight-copying batched matmul
        seq = src.flatten(2).permute(2, 0, 1).contiguous()
        pos_seq = pos.flatten(2).permute(2, 0, 1).contiguous()
        key_padding_mask = None if mask is None else mask.flatten(1)
        out = self.encoder(seq, pos_seq, key_padding_mask)
        return out.permute(1, 2, 0).reshape(b, c, h, w)


class TransformerEncoderPixelDecoder(nn.Module):
    """MaskFormer pixel decoder with a transformer encoder on the coarsest level.

    Args:
        config: dims and depth (:class:`seem.configs.PixelDecoderConfig`); ``config.in_channels`` lists the
            channels of ``res2, res3, ...`` (fine to coarse); the coarsest goes through the transformer.

    ``forward(features)`` takes ``{"res2": (B, C0, H/4, W/4), ..., "res5": (B, C3, H/32, W/32)}`` (backbone
    output on the padded image) and returns a :class:`PixelDecoderOutput`.
    """

    def __init__(self, config: PixelDecoderConfig) -> None:
        super().__init__()
        n = len(config.in_channels)
        if n < _NUM_MULTI_SCALE:
            raise ValueError(f"TransformerEncoderPixelDecoder needs >= {_NUM_MULTI_SCALE} input levels, got {n}")
        if config.conv_dim % 2:
            raise ValueError("TransformerEncoderPixelDecoder: conv_dim must be even (sine PE splits it in two)")
        if _norm_enabled(config.norm) and config.conv_dim % 32:
            raise ValueError("TransformerEncoderPixelDecoder: GroupNorm(32) needs conv_dim divisible by 32")
        self.in_features = [f"res{i + 2}" for i in range(n)]
        dim = config.conv_dim
        for i, channels in enumerate(config.in_channels[:-1]):
            self.add_module(f"adapter_{i + 1}", ConvNormAct(channels, dim, 1, norm=config.norm, relu=False))
            self.add_module(f"layer_{i + 1}", ConvNormAct(dim, dim, 3, norm=config.norm, relu=True))
        self.input_proj = nn.Conv2d(config.in_channels[-1], dim, kernel_size=1)
        _c2_xavier_fill(self.input_proj)
        self.transformer = TransformerEncoderOnly(config)
        self.pe_layer = PositionEmbeddingSine(dim // 2, normalize=True)
        self.add_module(f"layer_{n}", ConvNormAct(dim, dim, 3, norm=config.norm, relu=True))
        self.mask_features = nn.Conv2d(dim, config.mask_dim, kernel_size=3, padding=1)
        _c2_xavier_fill(self.mask_features)
        self.mask_position = (MaskPositionEncoding(config.mask_position_frequencies, config.mask_dim)
                              if config.mask_position_frequencies else None)

    def forward(self, features: dict[str, Tensor]) -> PixelDecoderOutput:
        """See the class docstring; ``features`` may hold extra keys, which are ignored."""
        missing = [k for k in self.in_features if k not in features]
        if missing:
            raise KeyError(f"TransformerEncoderPixelDecoder: missing input features {missing}")
        n = len(self.in_features)
        # channels_last: oneDNN's direct conv kernels run in NHWC (about 1.2x fp32, 1.5x bf16 on the 3x3 convs
        # at 1/4 resolution, which are most of the encoder's FLOPs) and GroupNorm / nearest upsampling keep it
        features = {k: features[k].contiguous(memory_format=torch.channels_last) for k in self.in_features}
        coarsest = features[self.in_features[-1]]
        encoded = self.transformer(self.input_proj(coarsest), self.pe_layer(coarsest))
        y = getattr(self, f"layer_{n}")(encoded)
        multi_scale = [y]
        for idx in range(n - 2, -1, -1):  # top-down: next finer level
            lateral = getattr(self, f"adapter_{idx + 1}")(features[self.in_features[idx]])
            y = lateral + F.interpolate(y, size=lateral.shape[-2:], mode="nearest")
            y = getattr(self, f"layer_{idx + 1}")(y)
            if len(multi_scale) < _NUM_MULTI_SCALE:
                multi_scale.append(y)
        mask_features = self.mask_features(y)
        if self.mask_position is not None:
            mask_features = self.mask_position(mask_features)
        return PixelDecoderOutput(
            mask_features=mask_features,
            transformer_encoder_features=encoded,
            multi_scale_features=multi_scale,
        )


def _norm_enabled(norm: str) -> bool:
    if norm == "GN":
        return True
    if norm == "":
        return False
    raise ValueError(f"pixel decoder: unsupported norm {norm!r}; expected 'GN' or ''")


def _c2_xavier_fill(conv: nn.Conv2d) -> None:
    """Caffe2 Xavier init used by detectron2 (``kaiming_uniform_(a=1)`` weight, zero bias)."""
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


__all__ = ["ConvNormAct", "PixelDecoderOutput", "TransformerEncoderPixelDecoder"]
