"""Training engine: the loss falls on one repeated batch; two gloo processes end with identical weights."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from seem.configs import DecoderConfig, PixelDecoderConfig, TextConfig
from seem.registry import SEEM_TINY
from seem.train.config import TrainConfig
from seem.train.engine import Trainer


def tiny_model_config():
    """seem_tiny's structure at test size (MobileNetV2 backbone, 2 decoder layers, small text encoder)."""
    return replace(
        SEEM_TINY,
        pixel_decoder=PixelDecoderConfig(in_channels=(24, 32, 96, 1280), conv_dim=32, mask_dim=32,
                                         num_encoder_layers=1, num_heads=2, dim_feedforward=64),
        text=TextConfig(width=32, layers=1, heads=2, dim_proj=32),
        decoder=DecoderConfig(hidden_dim=32, num_queries=8, num_heads=2, dim_feedforward=64, num_layers=2,
                              mask_dim=32, dim_proj=32, in_channels=32, spatial_memories=8, query_number=2),
    )


def train_config(tmp_path, **kw) -> TrainConfig:
    base = dict(image_size=64, batch_size=2, steps=30, init="none", lr=1e-3, warmup_steps=0, max_rounds=1,
                max_objects=2, max_sentences=1, num_points=256, freeze_backbone_stages=0, log_every=1,
                checkpoint_every=1000, out_dir=str(tmp_path / "run"), seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_loss_halves_on_one_repeated_batch_and_run_resumes(tmp_path):
    torch.manual_seed(0)
    config = train_config(tmp_path, repeat_first_batch=True, max_rounds=0, steps=40)
    trainer = Trainer(config, log=lambda *_: None, model_config=tiny_model_config())
    trainer.run()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    first, last = records[0]["loss"], sum(r["loss"] for r in records[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    assert {"images_per_s", "peak_rss_mb", "lr", "grad_norm"} <= set(records[-1])
    assert (tmp_path / "run" / "last.pt").is_file() and (tmp_path / "run" / "model.safetensors").is_file()
    resumed = Trainer(replace(config, steps=41), log=lambda *_: None, model_config=tiny_model_config())
    assert resumed.step == 40
    for (name, a), b in zip(trainer.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    torch.manual_seed(rank)  # different initial weights on purpose: rank 0's are broadcast
    trainer = Trainer(train_config(Path(out), steps=2, out_dir=os.path.join(out, "run")),
                      log=lambda *_: None, model_config=tiny_model_config())
    trainer.run()
    torch.save(trainer.model.state_dict(), os.path.join(out, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    init = Trainer(train_config(tmp_path, steps=2, out_dir=str(tmp_path / "fresh")), log=lambda *_: None,
                   model_config=tiny_model_config()).model.state_dict()
    assert any(not torch.equal(a[n], init[n]) for n in a if n.startswith("decoder."))  # it did train


from pathlib import Path  # noqa: E402  (used by the spawned worker)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_small_object_bias_draws_small_segments_more_often():
    from seem.errors import ConfigError
    from seem.train.config import TrainConfig
    from seem.train.step import prompt_weights

    masks = np.zeros((3, 16, 16), dtype=bool)
    masks[0, :1, :1], masks[1, :4, :4], masks[2] = True, True, True  # areas 1, 16, 256
    assert prompt_weights(masks, 0.0) is None  # uniform: the official draw
    np.testing.assert_allclose(prompt_weights(masks, 0.5), np.array([1, 1 / 4, 1 / 16]) / (1 + 1 / 4 + 1 / 16))
    with pytest.raises(ConfigError, match="small_object_bias"):
        TrainConfig.from_file(None, small_object_bias=-0.5)
    for bad in (1.5, -0.1, float("nan"), "0.5", True, [0.5]):
        with pytest.raises(ConfigError, match="color_jitter_prob"):
            TrainConfig.from_file(None, color_jitter_prob=bad)
    # seem train and seem train-pack draw with the same MixConfig, jitter included
    mix = TrainConfig.from_file(None, data="mix", color_jitter_prob=1, mix_weights=[["ccp", 1.0]]).mix_config()
    assert mix.color_jitter_prob == 1.0 and isinstance(mix.color_jitter_prob, float) and mix.weights == (("ccp", 1.0),)
