"""The GPU hand-off files: a training pack under a byte budget and weights in size-bounded shards."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
import torch

from seem.checkpoint import read_checkpoint
from seem.data.real_mix import MixedSample
from seem.errors import CheckpointError, ConfigError
from seem.train.export import export_checkpoint
from seem.train.pack import MIB, PackedSamples, write_pack
from seem.train.shards import INDEX, read_shards, write_shards


def _draw(seed: int, size: int = 96) -> MixedSample:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    image = np.stack([xx * 2, yy * 2, np.full_like(xx, 40 * (seed % 5))], -1).astype(np.uint8)
    left = (xx < size // 3) & (yy > 10)  # an object on the left
    disc = (xx - 60) ** 2 + (yy - 50) ** 2 < (10 + seed % 7) ** 2
    image[disc] = (200, 30, 30)
    masks = np.stack([left, disc, left | disc])
    noise = rng.integers(0, 2, size=(size, size)).astype(bool)
    return MixedSample(image, np.concatenate([masks, noise[None]]), ["car", "ball", "car", "region"],
                       ["generic", "generic", "text", "region"], [("car on the left", 0)], ("car", "ball"))


def test_pack_round_trip_keeps_masks_exact_and_images_close(tmp_path):
    draws = [_draw(s) for s in range(6)]
    info = write_pack(iter(draws), tmp_path / "p.npz", max_mib=4)
    assert info["samples"] == 6 and info["bytes"] == (tmp_path / "p.npz").stat().st_size
    pack = PackedSamples(tmp_path / "p.npz")
    assert len(pack) == 6 and pack.size == 96 and pack.vocabulary == ("car", "ball")
    for d, back in zip(draws, (pack[i] for i in range(6))):
        assert np.array_equal(back.masks, d.masks)  # bit-exact, noise included
        assert np.abs(back.image.astype(int) - d.image).mean() < 3.0  # JPEG q92
        assert (back.class_names, back.roles, back.expressions, back.vocabulary) == (
            d.class_names, d.roles, d.expressions, d.vocabulary)


def test_pack_respects_its_byte_budget(tmp_path):
    big = [_draw(s, size=320) for s in range(40)]
    info = write_pack(iter(big), tmp_path / "p.npz", max_mib=0.5)
    assert 0 < info["samples"] < 40
    assert info["bytes"] <= 0.5 * MIB
    with pytest.raises(ConfigError, match="holds no sample"):
        write_pack(iter(big), tmp_path / "q.npz", max_mib=0.07)


def test_pack_draws_cover_every_sample_each_epoch_and_flip_image_masks_and_phrases(tmp_path):
    write_pack(iter([_draw(s) for s in range(5)]), tmp_path / "p.npz")
    pack = PackedSamples(tmp_path / "p.npz")
    for epoch in (0, 1):  # blue level 40 * seed identifies a draw (JPEG moves it by a few levels)
        seen = sorted(round(pack.sample(epoch * 5 + k).image[50:, :20, 2].mean() / 40) for k in range(5))
        assert seen == [0, 1, 2, 3, 4]
    flipped = [pack.sample(s) for s in range(40) if pack.sample(s).expressions[0][0].endswith("right")]
    assert flipped, "no mirrored draw in 40"
    s = flipped[0]
    assert s.masks[0][:, -20:].any() and not s.masks[0][:, :20].any()  # the left object is now on the right
    assert (s.image[50:, -20:, 0].astype(int) - s.image[50:, :20, 0]).mean() < -100  # x gradient reversed


def test_pack_rejects_other_files(tmp_path):
    np.savez(tmp_path / "x.npz", meta=np.frombuffer(json.dumps({"format": "other"}).encode(), np.uint8))
    with pytest.raises(ConfigError, match="expected 'seem-pack-1'"):
        PackedSamples(tmp_path / "x.npz")
    (tmp_path / "y.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a seem training pack"):
        PackedSamples(tmp_path / "y.npz")
    np.savez(tmp_path / "z.npz", meta=np.array([{"format": "seem-pack-1"}], dtype=object))  # a pickled member
    with pytest.raises(ConfigError, match="not an .npz archive of plain arrays") as info:
        PackedSamples(tmp_path / "z.npz")
    assert "allow_pickle" not in str(info.value)
    with pytest.raises(ConfigError, match="not found"):
        PackedSamples(tmp_path / "missing.npz")


def _bundled() -> dict[str, torch.Tensor]:
    return read_checkpoint(resources.files("seem") / "assets" / "seem_tiny.safetensors")


def test_bundled_weights_round_trip_through_16_mib_shards(tmp_path):
    state = _bundled()
    paths = write_shards(state, tmp_path / "shards", max_mib=16)
    shards = [p for p in paths if p.suffix == ".safetensors"]
    assert len(shards) >= 2 and paths[-1].name == INDEX
    assert all(p.stat().st_size <= 16 * MIB for p in shards)
    back = read_shards(tmp_path / "shards")
    assert list(back) == list(state) and all(torch.equal(back[k], state[k]) for k in state)
    out = export_checkpoint(tmp_path / "shards", tmp_path / "merged.safetensors")
    merged = read_checkpoint(out)
    assert all(torch.equal(merged[k], state[k]) for k in state)


def test_shards_fail_loudly(tmp_path):
    state = {"a": torch.zeros(1000), "b": torch.ones(200_000), "c": torch.full((200_000,), 2.0)}
    with pytest.raises(CheckpointError, match="does not fit a 1.0 MiB shard"):
        write_shards({"big": torch.zeros(270_000)}, tmp_path / "s0", max_mib=1.0)
    paths = write_shards(state, tmp_path / "s", max_mib=1.0)
    assert len(paths) == 3
    paths[1].unlink()
    with pytest.raises(CheckpointError):
        read_shards(tmp_path / "s")
    index = json.loads((tmp_path / "s" / INDEX).read_text())
    index["weight_map"]["a"] = "../evil.safetensors"
    (tmp_path / "s" / INDEX).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="plain file name"):
        read_shards(tmp_path / "s")


def test_export_averages_several_sources_and_refuses_other_architectures(tmp_path):
    from seem.train.export import average_states

    a = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor([7])}
    b = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor([9])}
    soup = average_states([a, b])
    assert torch.equal(soup["w"], torch.tensor([2.0, 4.0])) and torch.equal(soup["n"], torch.tensor([7]))
    with pytest.raises(CheckpointError, match="only weights of one architecture"):
        average_states([a, {"w": torch.zeros(3), "n": torch.tensor([1])}])
    state = _bundled()
    shifted = {k: (v.float() + 1.0).to(v.dtype) if v.is_floating_point() else v for k, v in state.items()}
    write_shards(state, tmp_path / "s1", max_mib=16)
    write_shards(shifted, tmp_path / "s2", max_mib=16)
    merged = read_checkpoint(export_checkpoint([tmp_path / "s1", tmp_path / "s2"], tmp_path / "soup.safetensors"))
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 4096)
    expected = (state[key].float() + 0.5).to(torch.float16)
    assert torch.allclose(merged[key].float(), expected.float(), atol=1e-3)
