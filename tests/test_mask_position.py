"""Mask position features (seem.modeling.mask_position): zero start, growing a checkpoint, export, checks."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from seem.build import build_seem, check_config
from seem.checkpoint import save_safetensors
from seem.errors import ConfigError
from seem.modeling.mask_position import MaskPositionEncoding, fourier_grid

from test_train import tiny_model_config, train_config


def _with_position(config, frequencies: int):
    return replace(config, pixel_decoder=replace(config.pixel_decoder, mask_position_frequencies=frequencies))


def test_fourier_grid_channels():
    g = fourier_grid(4, 6, 3, torch.float32, torch.device("cpu"))
    assert g.shape == (12, 4, 6)
    rows = (torch.arange(4) + 0.5) / 4
    cols = (torch.arange(6) + 0.5) / 6
    for k in range(3):
        s = math.pi * 2**k
        torch.testing.assert_close(g[k, :, 0], torch.sin(s * rows))
        torch.testing.assert_close(g[3 + k, :, 5], torch.cos(s * rows))
        torch.testing.assert_close(g[6 + k, 2, :], torch.sin(s * cols))
        torch.testing.assert_close(g[9 + k, 0, :], torch.cos(s * cols))
    assert torch.equal(g[:6, :, 0], g[:6, :, 3])  # row features do not depend on the column


def test_zero_start_is_the_same_function_and_trained_weights_make_masks_depend_on_place():
    torch.manual_seed(0)
    base = build_seem(tiny_model_config()).eval()
    grown = build_seem(_with_position(tiny_model_config(), 4)).eval()
    state = dict(base.state_dict())
    missing = {k for k in grown.state_dict() if k not in state}
    assert missing == {"pixel_decoder.mask_position.proj.weight"}
    grown.load_state_dict(state, strict=False)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        a = base.pixel_decoder(base.backbone(x)).mask_features
        b = grown.pixel_decoder(grown.backbone(x)).mask_features
        assert torch.equal(a, b)
        # a flat image: without position the mask features are nearly flat away from the borders;
        # with a trained projection, a query can tell the left half from the right half
        flat = torch.zeros(1, 3, 64, 96)
        grown.pixel_decoder.mask_position.proj.weight.zero_()
        grown.pixel_decoder.mask_position.proj.weight[0, 4 * 2] = 1.0  # sin(pi * x): 0 at both sides, 1 at the centre
        f = grown.pixel_decoder(grown.backbone(flat)).mask_features
        g = base.pixel_decoder(base.backbone(flat)).mask_features
    diff = (f - g)[0, 0]
    w = diff.shape[1]
    torch.testing.assert_close(diff[5], torch.sin(math.pi * (torch.arange(w) + 0.5) / w))


def test_encoding_keeps_dtype_and_rejects_no_frequencies():
    enc = MaskPositionEncoding(2, 8)
    assert torch.count_nonzero(enc.proj.weight) == 0
    out = enc(torch.ones(2, 8, 3, 5, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and out.shape == (2, 8, 3, 5)
    with pytest.raises(ValueError, match="frequencies >= 1"):
        MaskPositionEncoding(0, 8)


@pytest.mark.parametrize("value", [-1, 17, 2.0, True, "4"])
def test_check_config_names_bad_frequencies(value):
    with pytest.raises(ConfigError, match="mask_position_frequencies"):
        check_config(_with_position(tiny_model_config(), value))


def test_check_config_rejects_position_on_the_deformable_decoder():
    config = tiny_model_config()
    config = replace(config, pixel_decoder=replace(config.pixel_decoder, name="transformer_encoder_deform"))
    check_config(config)  # the deformable decoder itself is fine here
    with pytest.raises(ConfigError, match="only implemented for transformer_encoder_fpn"):
        check_config(_with_position(config, 4))


def test_training_grows_a_checkpoint_and_export_records_the_frequencies(tmp_path):
    from seem.hub import from_pretrained
    from seem.train.engine import Trainer
    from seem.train.export import export_checkpoint

    torch.manual_seed(0)
    base = build_seem(tiny_model_config())
    init = save_safetensors(base.state_dict(), tmp_path / "init.safetensors", {"format": "seem"},
                            config=tiny_model_config())
    config = train_config(tmp_path, init=str(init), mask_position_frequencies=3, steps=3, position_lr_mult=10.0)
    trainer = Trainer(config, log=lambda *_: None, model_config=tiny_model_config())
    weight = trainer.model.pixel_decoder.mask_position.proj.weight
    assert weight.shape == (32, 12) and torch.count_nonzero(weight) == 0
    groups = [g for g in trainer.optimizer.param_groups if any(p is weight for p in g["params"])]
    assert len(groups) == 1 and groups[0]["initial_lr"] == pytest.approx(10 * config.lr)
    # training drops the init's scorers (seem.train.engine.build_model)
    from seem.candidates import SCORER_PREFIXES

    assert trainer.model.candidate_scorer is None and trainer.model.grounding_scorer is None
    assert trainer.model.box_scorer is None and trainer.model.refine_scorer is None
    for key, value in base.state_dict().items():  # everything else is the checkpoint's
        if key.startswith(SCORER_PREFIXES):
            continue
        assert torch.equal(trainer.model.state_dict()[key], value), key
    trainer.run()
    assert torch.count_nonzero(trainer.model.pixel_decoder.mask_position.proj.weight) > 0
    out = export_checkpoint(tmp_path / "run" / "model.safetensors", tmp_path / "bundled.safetensors",
                            config=tiny_model_config())
    model = from_pretrained(str(out))
    assert model.config.pixel_decoder.mask_position_frequencies == 3
    exported = model.pixel_decoder.mask_position.proj.weight
    np.testing.assert_allclose(exported.detach().numpy(), trainer.model.pixel_decoder.mask_position.proj.weight.detach().numpy(),
                               rtol=1e-3, atol=1e-4)  # float16 storage


def test_weighted_soup_counts_a_missing_position_projection_as_zeros():
    from seem.errors import CheckpointError
    from seem.train.export import average_states

    old = {"w": torch.ones(2, 3)}
    grown = {"w": torch.full((2, 3), 3.0), "pixel_decoder.mask_position.proj.weight": torch.full((4, 8), 2.0)}
    soup = average_states([old, grown], [0.7, 0.3])
    torch.testing.assert_close(soup["w"], torch.full((2, 3), 0.7 + 0.9))
    torch.testing.assert_close(soup["pixel_decoder.mask_position.proj.weight"], torch.full((4, 8), 0.6))
    torch.testing.assert_close(average_states([old, grown])["w"], torch.full((2, 3), 2.0))  # equal weights
    with pytest.raises(CheckpointError, match="weight per source"):
        average_states([old, grown], [1.0])
    with pytest.raises(CheckpointError, match="weight per source"):
        average_states([old, grown], [1.0, -0.5])
    with pytest.raises(CheckpointError, match="other keys"):
        average_states([old, {"v": torch.ones(2, 3)}])
