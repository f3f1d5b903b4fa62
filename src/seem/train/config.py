"""``TrainConfig``: every knob of ``seem train`` (a frozen dataclass; a JSON/YAML file overrides fields).

Defaults follow the official v1 recipe where it applies on a CPU (SEEM-REFERENCE.md §2.1): AdamW with
weight decay 0.05, linear warm-up then steps at 88.9 % and 96.3 % of training (gamma 0.1), gradient
clipping at norm 5, deep supervision, simulated interaction rounds without gradient before the supervised
pass. Sizes are scaled down for ``seem_tiny``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from seem.errors import ConfigError

if TYPE_CHECKING:
    from seem.data.real_mix import MixConfig


# TrainConfig.backbone's choices (seem.modeling.backbones.table.with_backbone)
SWAPPABLE_BACKBONES = ("mobilenet_v2", "efficientnet_lite0", "efficientnet_lite2")


@dataclass(frozen=True)
class TrainConfig:
    model: str = "seem_tiny"  # registry name (architecture); weights start from `init`
    init: str = "imagenet"  # "imagenet" (the backbone's ImageNet weights, seem.train.backbone_init), "none", or a checkpoint path
    # "" keeps the registered model's backbone; "mobilenet_v2" / "efficientnet_lite0" / "efficientnet_lite2" swap it
    # in (seem.modeling.backbones.table.with_backbone: the pixel decoder's inputs and the input normalisation follow)
    backbone: str = ""
    # the model's PixelDecoderConfig.mask_position_frequencies (None: as registered). Turning it on from an `init`
    # checkpoint without the projection starts it at zero, so training continues from the same function
    mask_position_frequencies: int | None = None
    data: str = "scenes"  # "scenes" (generated on the fly), "mix" (real photos + scenes, seem.data.real_mix)
    # or "pack" (draws stored in the file `pack`, seem.train.pack: for a machine without the data sets)
    pack: str = ""
    data_root: str = "../shared/datasets"  # folder of the real sets (data="mix")
    mix_weights: tuple[tuple[str, float], ...] = ()  # (set, weight) pairs; () = MixConfig's defaults
    copy_paste_prob: float = 0.3
    duplicate_paste_prob: float = 0.0  # a pasted object comes in 2..3 identical copies (MixConfig.duplicate_prob)
    color_jitter_prob: float = 0.0  # photometric jitter of a real-photo draw (MixConfig.color_jitter_prob)
    single_click_prob: float = 0.4  # first prompt = one click (the evaluation protocol's first round)
    box_negative_prob: float = 0.3  # a box prompt also gets 1..2 negative clicks inside the box
    # prompted objects drawn with probability ~ area ** -small_object_bias (0: uniform, the official draw;
    # 0.5: a 16x smaller segment is 4x as likely), so small objects get their share of the visual-prompt loss
    small_object_bias: float = 0.0
    image_size: int = 320  # square training scenes, pixels
    steps: int = 4000
    batch_size: int = 8  # images per step per process
    lr: float = 2e-4  # BASE_LR (official 1e-4 at batch 16 for a pretrained decoder; we train from scratch)
    backbone_lr_mult: float = 0.1  # official LR multiplier for backbone and language encoder
    position_lr_mult: float = 10.0  # the mask position projection starts at zero (seem.modeling.mask_position)
    weight_decay: float = 0.05
    warmup_steps: int = 100
    milestones: tuple[float, ...] = (0.88889, 0.96296)  # fractions of `steps` (official WarmupMultiStepLR)
    gamma: float = 0.1
    clip_norm: float = 5.0
    # kept frozen (saves backward time on CPU): MobileNetV2's features[:N]; EfficientNet-Lite's stem and _blocks[:N]
    freeze_backbone_stages: int = 7
    freeze_text_encoder: bool = False  # official SEEM freezes backbone, text encoder and pixel decoder
    freeze_pixel_decoder: bool = False
    max_objects: int = 3  # visual-prompted objects per image (official MAX_CANDIDATE 10)
    max_sentences: int = 2  # referring expressions per image (official GROUNDING.MAX_LEN - 1 = 4)
    max_rounds: int = 3  # simulated interaction rounds without gradient, r ~ U{0..max_rounds} (official 5)
    num_points: int = 3136  # points for mask losses / matching (official 12544 at 1024 px; (320/4)^2 / 2)
    seed: int = 0
    repeat_first_batch: bool = False  # the same batch every step (overfitting checks)
    train_seed_offset: int = 1_000_000  # training scenes use seeds >= this; evaluation seeds stay below
    bf16: bool = False  # autocast to bfloat16 where supported
    threads: int = 0  # torch threads per process (0: leave torch's default)
    log_every: int = 10
    checkpoint_every: int = 200
    out_dir: str = "runs/seem_tiny"
    device: str = "cpu"  # "cpu", "cuda[:N]" or "auto"
    max_minutes: float = 0.0  # stop (and checkpoint) after this much wall-clock training time; 0 = no limit

    def mix_config(self) -> MixConfig:
        """The :class:`seem.data.real_mix.MixConfig` of ``data="mix"`` (``seem train`` and ``seem train-pack``)."""
        from dataclasses import replace

        from seem.data.real_mix import MixConfig

        mix = MixConfig(root=self.data_root, size=self.image_size, copy_paste_prob=self.copy_paste_prob,
                        duplicate_prob=self.duplicate_paste_prob, color_jitter_prob=self.color_jitter_prob)
        return replace(mix, weights=tuple(self.mix_weights)) if self.mix_weights else mix

    @classmethod
    def from_file(cls, path: str | Path | None, **overrides) -> TrainConfig:
        """Read a JSON or YAML file of field values (unknown keys are an error), then apply ``overrides``."""
        values: dict = {}
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise ConfigError(f"training config {p} not found")
            text = p.read_text(encoding="utf-8")
            if p.suffix in (".yaml", ".yml"):
                from seem.errors import require

                values = require("yaml", "hub").safe_load(text) or {}
            else:
                values = json.loads(text)
            if not isinstance(values, dict):
                raise ConfigError(f"training config {p} must hold a mapping of field names to values")
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training config fields {unknown}; known: {sorted(known)}")
        if "mix_weights" in values:
            values["mix_weights"] = tuple((str(n), float(w)) for n, w in values["mix_weights"])
        if values.get("data", "scenes") not in ("scenes", "mix", "pack"):
            raise ConfigError(f"data must be 'scenes', 'mix' or 'pack', got {values['data']!r}")
        if values.get("data") == "pack" and not values.get("pack"):
            raise ConfigError("data 'pack' needs `pack`: the path of a file written by `seem train-pack`")
        if float(values.get("small_object_bias", 0.0)) < 0:
            raise ConfigError(f"small_object_bias must be >= 0, got {values['small_object_bias']}")
        if "color_jitter_prob" in values:
            p = values["color_jitter_prob"]
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
                raise ConfigError(f"color_jitter_prob must be a number in [0, 1], got {p!r}")
            values["color_jitter_prob"] = float(p)
        if "milestones" in values:
            values["milestones"] = tuple(values["milestones"])
        if values.get("backbone", "") not in ("", *SWAPPABLE_BACKBONES):
            raise ConfigError(f"backbone must be one of {list(SWAPPABLE_BACKBONES)} (or empty), got {values['backbone']!r}")
        return cls(**values)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def lr_factor(self, step: int) -> float:
        """Warm-up (linear from 0.001) then step decay at the milestones."""
        if step < self.warmup_steps:
            alpha = step / max(1, self.warmup_steps)
            return 0.001 * (1 - alpha) + alpha
        return self.gamma ** sum(step >= m * self.steps for m in self.milestones)
