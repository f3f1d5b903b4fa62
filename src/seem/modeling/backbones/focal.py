"""FocalNet image backbone (focal modulation networks), as used by SEEM Focal-T and Focal-L.

Follows the official X-Decoder / SEEM ``modeling/vision/backbone/focal.py`` (name ``"focal"``, Focal-L) and
``focal_dw.py`` (name ``"focal_dw"``, Focal-T), class ``D2FocalNet``. Parameter names equal the official
``backbone.*`` state-dict keys without the ``backbone.`` prefix, so loading a checkpoint is a prefix strip.

The two official variants differ in three places, all reproduced here:

* ``focal_dw`` blocks wrap each residual branch with a depth-wise 3x3 conv (``dw1`` before the modulation,
  ``dw2`` before the MLP, each added residually);
* with post-LN, ``focal_dw`` normalises *after* each residual sum (``x = norm(x + g * f(x))``) while ``focal``
  normalises the branch output *before* it (``x = x + g * norm(f(x))``);
* the conv stem (7x7, stride 4) pads by 3 in ``focal_dw`` and by 2 in ``focal`` (the latter is shifted by one
  pixel; kept for checkpoint fidelity).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seem.configs import STRIDES, FocalNetConfig
from seem.modeling.packed_linear import Linear

_VARIANTS = ("focal", "focal_dw")
_LAYERSCALE_INIT = 1e-4  # official ``layerscale_value``


class DropPath(nn.Module):
    """Stochastic depth: zero a whole residual branch per sample with probability ``drop_prob`` (training only).

    Surviving samples are scaled by ``1 / (1 - drop_prob)``; identity in eval mode or when ``drop_prob == 0``.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` of any shape ``(B, ...)`` -> same shape."""
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Mlp(nn.Module):
    """Token MLP ``fc2(GELU(fc1(x)))`` on channel-last ``(..., C)`` input (official ``Mlp``)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        # GELU as part of fc1, fused into its packed product (one pass over the 4x wide hidden tokens, not two)
        self.fc1 = Linear(dim, hidden_dim, activation="gelu")
        self.fc2 = Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.fc1(x))


class FocalModulation(nn.Module):
    """Focal modulation (official ``FocalModulation``): ``proj(q * h(sum_l gate_l * ctx_l))``.

    ``f`` projects each token to a query ``q``, a context ``ctx`` and ``focal_level + 1`` gates; ``ctx`` goes
    through ``focal_level`` stacked depth-wise convs (kernel ``focal_window + 2 * l``, no bias, GELU) and a global
    average (GELU); the gated sum (divided by ``focal_level + 1`` when ``scaling_modulator``) is mixed by the 1x1
    conv ``h`` and multiplies ``q``.
    """

    def __init__(
        self,
        dim: int,
        focal_level: int,
        focal_window: int,
        focal_factor: int = 2,
        use_postln_in_modulation: bool = False,
        scaling_modulator: bool = False,
    ) -> None:
        super().__init__()
        self.focal_level = focal_level
        self.scaling_modulator = scaling_modulator
        self.f = Linear(dim, 2 * dim + focal_level + 1)
        self.h = nn.Conv2d(dim, dim, kernel_size=1)
        self.act = nn.GELU()
        self.proj = Linear(dim, dim)
        self.focal_layers = nn.ModuleList()
        for level in range(focal_level):
            k = focal_factor * level + focal_window
            self.focal_layers.append(
                nn.Sequential(nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim, bias=False), nn.GELU())
            )
        self.ln = nn.LayerNorm(dim) if use_postln_in_modulation else None

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, H, W, C)`` channel-last -> ``(B, H, W, C)``."""
        c = x.shape[-1]
        # (B, C, H, W) views of the channel-last projection: convs read them as channels_last, which spares
        # the full-size NCHW copy (the official layout) and gives the same values
        x = self.f(x).permute(0, 3, 1, 2)
        q, ctx, gates = torch.split(x, [c, c, self.focal_level + 1], dim=1)
        if self.scaling_modulator:  # the official divides the gated sum; the (L + 1)-channel gates are cheaper
            gates = gates / (self.focal_level + 1)
        ctx_all: Tensor | None = None
        # gated sums as addcmul: one pass each, and the (B, C, 1, 1) x (B, 1, H, W) global term stays
        # channels-last (a separate product comes out NCHW, and adding it to a channels-last map is ~20x slower)
        for level, layer in enumerate(self.focal_layers):
            ctx = layer(ctx)
            gate = gates[:, level : level + 1]
            ctx_all = ctx * gate if ctx_all is None else torch.addcmul(ctx_all, ctx, gate)
        # one reduction over (H, W): the official mean over H, then W, strides through a channels-last map
        ctx_global = self.act(ctx.mean((2, 3), keepdim=True))
        gate = gates[:, self.focal_level :]
        ctx_all = ctx_global * gate if ctx_all is None else torch.addcmul(ctx_all, ctx_global, gate)
        out = (q * self.h(ctx_all)).permute(0, 2, 3, 1)
        if self.ln is not None:
            out = self.ln(out)
        return self.proj(out)


def _dwconv_residual(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """``x + conv(x)`` for channel-last ``x (B, H, W, C)`` and a depth-wise conv on ``(B, C, H, W)``."""
    y = x.permute(0, 3, 1, 2)  # channels_last view: no copy, the conv keeps that layout
    y = y + conv(y)
    return y.permute(0, 2, 3, 1).contiguous()


class FocalModulationBlock(nn.Module):
    """One FocalNet block (official ``FocalModulationBlock`` of ``focal.py`` / ``focal_dw.py``).

    Args:
        dim: channels.
        depthwise: ``True`` for the ``focal_dw`` block (``dw1``/``dw2`` convs and post-residual post-LN).
        use_postln: post-LN (see module docstring for where each variant puts it) instead of pre-LN.
        use_layerscale: learnable per-channel ``gamma_1``/``gamma_2`` on the two branches.
        drop_path: stochastic-depth rate of this block (training only).
    """

    def __init__(
        self,
        dim: int,
        *,
        depthwise: bool,
        focal_level: int,
        focal_window: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        use_postln: bool = False,
        use_postln_in_modulation: bool = False,
        scaling_modulator: bool = False,
        use_layerscale: bool = False,
    ) -> None:
        super().__init__()
        self.depthwise = depthwise
        self.use_postln = use_postln
        if depthwise:
            self.dw1 = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.modulation = FocalModulation(
            dim,
            focal_level=focal_level,
            focal_window=focal_window,
            use_postln_in_modulation=use_postln_in_modulation,
            scaling_modulator=scaling_modulator,
        )
        if depthwise:
            self.dw2 = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.gamma_1: nn.Parameter | None
        self.gamma_2: nn.Parameter | None
        if use_layerscale:
            self.gamma_1 = nn.Parameter(torch.full((dim,), _LAYERSCALE_INIT))
            self.gamma_2 = nn.Parameter(torch.full((dim,), _LAYERSCALE_INIT))
        else:
            self.gamma_1 = None
            self.gamma_2 = None

    @staticmethod
    def _scale(gamma: Tensor | None, x: Tensor) -> Tensor:
        return x if gamma is None else gamma * x

    def _residual(self, shortcut: Tensor, gamma: Tensor | None, x: Tensor) -> Tensor:
        """``shortcut + drop_path(gamma * x)``; with layer scale and no active drop path one ``addcmul`` (one pass
        over the map instead of two)."""
        if gamma is not None and not (self.training and self.drop_path.drop_prob > 0):
            return torch.addcmul(shortcut, gamma, x)
        return shortcut + self.drop_path(self._scale(gamma, x))

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, H, W, C)`` channel-last -> ``(B, H, W, C)``."""
        if self.depthwise:
            x = _dwconv_residual(x, self.dw1)
        shortcut = x
        if not self.use_postln:
            x = self.norm1(x)
        x = self.modulation(x)
        if self.use_postln and not self.depthwise:
            x = self.norm1(x)  # focal: norm on the branch, before the residual sum
        x = self._residual(shortcut, self.gamma_1, x)
        if self.use_postln and self.depthwise:
            x = self.norm1(x)  # focal_dw: norm after the residual sum

        if self.depthwise:
            x = _dwconv_residual(x, self.dw2)
        if not self.use_postln:
            return self._residual(x, self.gamma_2, self.mlp(self.norm2(x)))
        if self.depthwise:
            return self.norm2(self._residual(x, self.gamma_2, self.mlp(x)))
        return self._residual(x, self.gamma_2, self.norm2(self.mlp(x)))


class PatchEmbed(nn.Module):
    """Patch embedding / downsampling (official ``PatchEmbed``): conv then LayerNorm over channels.

    With ``use_conv_embed`` the stem is a 7x7 stride-4 conv (padding ``stem_padding``) and downsampling a 3x3
    stride-2 conv (padding 1); otherwise a ``patch_size`` x ``patch_size`` conv with equal stride. The input is
    first zero-padded bottom/right to a multiple of ``patch_size`` (as the official code does).
    """

    def __init__(
        self,
        in_chans: int,
        embed_dim: int,
        patch_size: int,
        *,
        use_conv_embed: bool,
        is_stem: bool,
        stem_padding: int = 3,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        if use_conv_embed:
            kernel, stride, padding = (7, 4, stem_padding) if is_stem else (3, 2, 1)
        else:
            kernel, stride, padding = patch_size, patch_size, 0
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=kernel, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, C_in, H, W)`` -> channel-last ``(B, H', W', C_out)``."""
        h, w = x.shape[-2:]
        pad_w = (-w) % self.patch_size
        pad_h = (-h) % self.patch_size
        if pad_w or pad_h:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class FocalStage(nn.Module):
    """One resolution stage (official ``BasicLayer``): ``blocks`` then an optional ``downsample``."""

    def __init__(self, blocks: list[FocalModulationBlock], downsample: PatchEmbed | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``x (B, H, W, C)`` -> (stage output ``(B, H, W, C)``, downsampled ``(B, H/2, W/2, 2C)`` or ``None``)."""
        for block in self.blocks:
            x = block(x)
        if self.downsample is None:
            return x, None
        return x, self.downsample(x.permute(0, 3, 1, 2))


class FocalNet(nn.Module):
    """FocalNet backbone returning four feature maps (official ``D2FocalNet``).

    Args:
        config: ``config.name`` selects ``"focal_dw"`` (Focal-T) or ``"focal"`` (Focal-L); see
            :class:`seem.configs.FocalNetConfig`. Patch norm is always on and all four stages are output
            (official ``PATCH_NORM: True``, ``OUT_INDICES: [0, 1, 2, 3]`` in every SEEM config).

    ``forward(images)`` takes ``(B, 3, H, W)`` float, normalised RGB, ``H`` and ``W`` multiples of 32 (other sizes
    are padded bottom/right like the official code) and returns ``{"res2": (B, C0, H/4, W/4), "res3": (B, 2*C0,
    H/8, W/8), "res4": (B, 4*C0, H/16, W/16), "res5": (B, 8*C0, H/32, W/32)}`` with ``C0 = embed_dim``, each
    passed through its LayerNorm ``norm{i}``.
    """

    strides = STRIDES
    supports_bf16 = True

    def __init__(self, config: FocalNetConfig) -> None:
        super().__init__()
        if config.name not in _VARIANTS:
            raise ValueError(f"FocalNet: unknown backbone name {config.name!r}; expected one of {_VARIANTS}")
        n_stages = len(config.depths)
        if not (len(config.focal_levels) == len(config.focal_windows) == n_stages):
            raise ValueError("FocalNet: depths, focal_levels and focal_windows must have the same length")
        depthwise = config.name == "focal_dw"
        self.num_features = list(config.out_channels)

        self.patch_embed = PatchEmbed(
            3,
            config.embed_dim,
            config.patch_size,
            use_conv_embed=config.use_conv_embed,
            is_stem=True,
            stem_padding=3 if depthwise else 2,
        )
        n = sum(config.depths)
        rates = [config.drop_path_rate * i / max(n - 1, 1) for i in range(n)]  # linspace, device-free
        self.layers = nn.ModuleList()
        for i, depth in enumerate(config.depths):
            dim = self.num_features[i]
            start = sum(config.depths[:i])
            blocks = [
                FocalModulationBlock(
                    dim,
                    depthwise=depthwise,
                    focal_level=config.focal_levels[i],
                    focal_window=config.focal_windows[i],
                    mlp_ratio=config.mlp_ratio,
                    drop_path=rates[start + j],
                    use_postln=config.use_postln,
                    use_postln_in_modulation=config.use_postln_in_modulation,
                    scaling_modulator=config.scaling_modulator,
                    use_layerscale=config.use_layerscale,
                )
                for j in range(depth)
            ]
            downsample = None
            if i < n_stages - 1:
                downsample = PatchEmbed(
                    dim, 2 * dim, 2, use_conv_embed=config.use_conv_embed, is_stem=False
                )
            self.layers.append(FocalStage(blocks, downsample))
        for i, dim in enumerate(self.num_features):
            self.add_module(f"norm{i}", nn.LayerNorm(dim))
        self.apply(_init_weights)

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of res2..res5: ``(C0, 2 * C0, 4 * C0, 8 * C0)``."""
        return tuple(self.num_features)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """``images (B, 3, H, W)`` float normalised -> ``{"res2".."res5"}``, each ``(B, C_i, H/2**(i+2), W/2**(i+2))``."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"FocalNet expects images of shape (B, 3, H, W), got {tuple(images.shape)}")
        x = self.patch_embed(images)
        outputs: dict[str, Tensor] = {}
        for i, stage in enumerate(self.layers):
            out, down = stage(x)
            norm = getattr(self, f"norm{i}")
            outputs[f"res{i + 2}"] = norm(out).permute(0, 3, 1, 2).contiguous()
            if down is not None:
                x = down
        return outputs


def _init_weights(module: nn.Module) -> None:
    """Official FocalNet init: truncated-normal(0.02) Linear weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
