"""SEEM SAM-ViT-B / ViT-L: the official key set at full size (meta device), ``from_pretrained`` of an official-named
ViT-L checkpoint (reduced widths, official depth and key set), and the ViT / deformable-attention building blocks.

Parity with the official outputs is in the ``kind="samvit"`` runs of ``test_backbone.py``, ``test_pixel_decoder.py``,
``test_parity_decoder.py`` and ``test_fast_path.py``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket

import pytest
import torch

import seem
from seem import registry
from seem.build import build_backbone, build_seem
from seem.checkpoint import convert_official_state_dict
from seem.configs import DecoderConfig, PixelDecoderConfig, SeemConfig, TextConfig, ViTConfig
from seem.errors import ConfigError
from seem.modeling.backbones.vit import SamViT, relative_position_table, window_partition, window_unpartition
from seem.modeling.ms_deform_attn import ms_deform_attn_sample

from _fixture import fixture_dir

VIT_L_GLOBAL = (5, 11, 17, 23)


def _official_key_templates() -> dict[str, list[int]]:
    """The official SEEM SAM-ViT key names (the fixture's ``state_dict_keys.json``), block index as ``{n}``."""
    path = fixture_dir("samvit") / "state_dict_keys.json"
    if not path.is_file():
        pytest.skip(f"no SAM-ViT fixture at {path.parent}")
    keys = json.loads(path.read_text())
    return {re.sub(r"^backbone\.blocks\.\d+\.", "backbone.blocks.{n}.", k): v for k, v in keys.items()}


def _official_keys(depth: int, decoder_layers: int, encoder_layers: int, text_layers: int) -> set[str]:
    """The official key set of a SEEM SAM-ViT model of these depths, expanded from the fixture's names. The
    decoder's ``input_proj`` convs exist only when ``CONVS_DIM != HIDDEN_DIM`` (the fixture: 64 vs 96; the released
    models: 512 both), so they are left out."""
    out = set()
    for key in _official_key_templates():
        if key.startswith("sem_seg_head.predictor.input_proj."):
            continue
        if "{n}" in key:
            out |= {key.format(n=i) for i in range(depth)}
            continue
        for pattern, count in ((r"(transformer_(?:self|cross)_attention_layers|transformer_ffn_layers)\.(\d+)\.",
                                decoder_layers), (r"(transformer\.encoder\.layers)\.(\d+)\.", encoder_layers),
                               (r"(resblocks)\.(\d+)\.", text_layers)):
            m = re.search(pattern, key)
            if m:
                out |= {key[: m.start(2)] + str(i) + key[m.end(2) :] for i in range(count)}
                break
        else:
            out.add(key)
    return out


def test_samvitl_builds_with_the_official_key_set_and_shapes():
    """Full-size ViT-L on the meta device: exactly the official keys (24 blocks, 9 decoder layers, 6 deformable
    encoder layers, 12 text layers) and the shapes the official code gives them."""
    with torch.device("meta"):
        model = build_seem(registry.get_variant("seem_samvitl_v1").config)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    official = _official_keys(depth=24, decoder_layers=9, encoder_layers=6, text_layers=12)
    converted = convert_official_state_dict(dict.fromkeys(official, torch.empty(0)))
    assert set(converted) == set(ours)
    assert ours["backbone.pos_embed"] == (1, 64, 64, 1024)
    assert ours["backbone.patch_embed.proj.weight"] == (1024, 3, 16, 16)
    for i in range(24):  # window blocks: 2 * 14 - 1 relative positions; global blocks: 2 * 64 - 1
        assert ours[f"backbone.blocks.{i}.attn.rel_pos_h"] == ((127 if i in VIT_L_GLOBAL else 27), 64)
    assert ours["backbone.blocks.23.mlp.lin1.weight"] == (4096, 1024)
    assert ours["backbone.neck.down_4.0.weight"] == (1024, 512, 2, 2)  # ConvTranspose2d: [in, out, k, k]
    assert ours["backbone.neck.down_4.5.weight"] == (128, 256, 1, 1)
    assert ours["backbone.neck.down_8.0.weight"] == (1024, 512, 2, 2)
    assert ours["backbone.neck.down_16.0.weight"] == (512, 1024, 1, 1)
    assert ours["backbone.neck.down_32.0.weight"] == (2048, 1024, 2, 2)
    assert ours["backbone.neck.down_32.2.weight"] == (1024, 2048, 1, 1)
    pd = "pixel_decoder."
    assert ours[pd + "input_proj.0.0.weight"] == (512, 1024, 1, 1) and ours[pd + "input_proj.2.0.weight"] == (512, 256, 1, 1)
    assert ours[pd + "transformer.level_embed"] == (3, 512)
    assert ours[pd + "transformer.encoder.layers.5.self_attn.sampling_offsets.weight"] == (8 * 3 * 4 * 2, 512)
    assert ours[pd + "transformer.encoder.layers.5.self_attn.attention_weights.weight"] == (8 * 3 * 4, 512)
    assert ours[pd + "transformer.encoder.layers.5.linear1.weight"] == (1024, 512)
    assert ours[pd + "adapter_1.weight"] == (512, 128, 1, 1) and ours[pd + "mask_features.weight"] == (512, 512, 1, 1)
    assert ours["decoder.query_feat.weight"] == (101, 512)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert 430 < params < 450, params  # ~1.76 GB of float32, the size of the released seem_samvitl_v1.pt


def _small_vitl() -> SeemConfig:
    """ViT-L's depth, heads and global blocks at reduced widths, with a small pixel decoder / decoder / text."""
    backbone = ViTConfig(embed_dim=32, depth=24, num_heads=16, global_attn_indexes=VIT_L_GLOBAL, image_size=64,
                         neck_out_dims=(8, 16, 32, 64))
    return SeemConfig(
        backbone=backbone,
        pixel_decoder=PixelDecoderConfig(name="transformer_encoder_deform", in_channels=backbone.out_channels,
                                         conv_dim=32, mask_dim=32, num_encoder_layers=6, num_heads=8,
                                         dim_feedforward=1024),
        text=TextConfig(width=32, layers=12, heads=4, dim_proj=32),
        decoder=DecoderConfig(hidden_dim=32, num_queries=101, num_heads=8, dim_feedforward=64, num_layers=9,
                              mask_dim=32, dim_proj=32, in_channels=32),
        size_divisibility=64,
    )


def test_from_pretrained_samvitl_converts_and_loads_an_official_checkpoint_strictly(tmp_path, monkeypatch):
    """``seem.from_pretrained("seem_samvitl_v1")`` on a fake offline Hugging Face cache holding an official-named
    ViT-L state dict (official key set, reduced widths): downloaded, converted, loaded strictly, weights intact."""
    pytest.importorskip("huggingface_hub")
    hf_constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(socket.socket, "connect", lambda *a, **k: pytest.fail("tests must not touch the network"))
    variant = dataclasses.replace(registry.get_variant("seem_samvitl_v1"), config=_small_vitl())
    monkeypatch.setitem(registry._BY_NAME, "seem_samvitl_v1", variant)

    torch.manual_seed(0)
    shapes = {k: v.shape for k, v in build_seem(variant.config).state_dict().items()}
    official = _official_keys(depth=24, decoder_layers=9, encoder_layers=6, text_layers=12)
    ignored = {"criterion.empty_weight": (134,), "dilation_kernel": (1, 1, 3, 3)}  # in every official file
    assert set(ignored) <= official
    to_ours = {k: next(iter(convert_official_state_dict({k: torch.empty(0)}))) for k in sorted(official - set(ignored))}
    assert set(to_ours.values()) == set(shapes)
    g = torch.Generator().manual_seed(1)
    state = {k: torch.randn(shapes[ours], generator=g) for k, ours in to_ours.items()}
    state.update({k: torch.ones(shape) for k, shape in ignored.items()})

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--xdecoder--SEEM"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    torch.save(state, repo / "snapshots" / commit / "seem_samvitl_v1.pt")

    model = seem.from_pretrained("seem_samvitl_v1", cache_dir=tmp_path)
    loaded = model.state_dict()
    assert torch.equal(loaded["backbone.blocks.23.attn.rel_pos_h"], state["backbone.blocks.23.attn.rel_pos_h"])
    assert torch.equal(loaded["pixel_decoder.transformer.encoder.layers.5.self_attn.sampling_offsets.weight"],
                       state["sem_seg_head.pixel_decoder.transformer.encoder.layers.5.self_attn.sampling_offsets.weight"])
    assert isinstance(model.backbone, SamViT) and len(model.backbone.blocks) == 24
    with torch.no_grad():  # and it runs: one encode at the padded size
        feats = model.encode_image(torch.zeros(1, 3, 64, 64))
    assert tuple(feats.mask_features.shape) == (1, 32, 16, 16)


def test_mismatched_configs_raise():
    vit = registry.get_variant("seem_samvitb_v1").config
    with pytest.raises(ConfigError, match="backbone 'vit' needs a ViTConfig, got a FocalNetConfig"):
        build_backbone(dataclasses.replace(SeemConfig().backbone, name="vit"))
    with pytest.raises(ConfigError, match=r"pixel_decoder in_channels \(96, 192, 384, 768\) must equal backbone 'vit' out_channels \(128,"):
        build_seem(dataclasses.replace(vit, pixel_decoder=PixelDecoderConfig(name="transformer_encoder_deform")))
    with pytest.raises(ConfigError, match=r"decoder in_channels \(512\) must equal pixel decoder conv_dim \(256\)"):
        build_seem(dataclasses.replace(vit, pixel_decoder=dataclasses.replace(vit.pixel_decoder, conv_dim=256)))
    with pytest.raises(ConfigError, match="pixel decoder 'msda' is not implemented"):
        build_seem(dataclasses.replace(vit, pixel_decoder=dataclasses.replace(vit.pixel_decoder, name="msda")))
    with pytest.raises(ConfigError, match="backbone 'davit' is not implemented"):
        build_backbone(dataclasses.replace(SeemConfig().backbone, name="davit"))


def test_window_partition_round_trip_and_relative_table():
    x = torch.randn(2, 16, 17, 5)
    windows, padded = window_partition(x, 14)
    assert tuple(windows.shape) == (2 * 2 * 2, 14, 14, 5) and padded == (28, 28)
    assert torch.equal(windows[0], x[0, :14, :14])
    assert torch.equal(windows[3, :2, :3], x[0, 14:, 14:])  # last window: bottom-right, zero-padded beyond
    assert not windows[3, 2:].any()
    assert torch.equal(window_unpartition(windows, 14, padded, (16, 17)), x)
    table = torch.arange(7.0)[:, None]  # 2 * 4 - 1 relative positions
    assert relative_position_table(table, 4)[..., 0].tolist() == [[3, 2, 1, 0], [4, 3, 2, 1], [5, 4, 3, 2], [6, 5, 4, 3]]
    longer = relative_position_table(table, 5)  # linearly resized to 9 entries
    assert longer.shape == (5, 5, 1) and longer[0, 0, 0] == pytest.approx(3.0)


def test_vit_position_embedding_is_exact_at_its_grid_and_resized_elsewhere():
    torch.manual_seed(0)
    model = SamViT(ViTConfig(embed_dim=16, depth=2, num_heads=2, global_attn_indexes=(1,), image_size=64,
                             neck_out_dims=(4, 8, 8, 16))).eval()
    torch.nn.init.normal_(model.pos_embed)
    assert model.position_embedding(4, 4) is model.pos_embed
    assert tuple(model.position_embedding(6, 4).shape) == (1, 6, 4, 16)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 96, 64))  # another input size: position embedding resized, tables too
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "res2": (1, 4, 24, 16), "res3": (1, 8, 12, 8), "res4": (1, 8, 6, 4), "res5": (1, 16, 3, 2)}
    with pytest.raises(ValueError, match="not a multiple of 32"):
        model(torch.zeros(1, 3, 80, 64))


def _random_sampling(n=2, heads=3, dim=5, sizes=((3, 4), (6, 5), (2, 2)), lq=7, points=4):
    g = torch.Generator().manual_seed(0)
    s = sum(h * w for h, w in sizes)
    value = torch.randn(n, s, heads, dim, generator=g)
    locations = torch.rand(n, lq, heads, len(sizes), points, 2, generator=g) * 1.4 - 0.2  # some outside [0, 1]
    locations[0, 0, 0, 0, :] = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.5, 1.0], [-5.0, 1e6]])
    weights = torch.rand(n, lq, heads, len(sizes) * points, generator=g).softmax(-1).view(n, lq, heads, len(sizes), points)
    return value, list(sizes), locations, weights


def test_gather_sampler_equals_grid_sample_and_stays_finite_in_bf16():
    value, sizes, locations, weights = _random_sampling()
    reference = ms_deform_attn_sample(value, sizes, locations, weights, method="grid_sample")
    gathered = ms_deform_attn_sample(value, torch.tensor(sizes), locations, weights)
    assert gathered.shape == (2, 7, 15)
    torch.testing.assert_close(gathered, reference, atol=1e-6, rtol=0)
    half = ms_deform_attn_sample(value.bfloat16(), sizes, locations, weights)
    assert half.dtype == torch.bfloat16 and torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), reference, atol=0.05, rtol=0.02)
    with pytest.raises(ValueError, match="unknown deformable sampling method"):
        ms_deform_attn_sample(value, sizes, locations, weights, method="cuda")


def test_a_vitb_checkpoint_in_a_vitl_model_is_named_in_the_error():
    """The converter's error reads the ViT sizes back from the keys (``ViTConfig.describe_shapes``)."""
    from seem.checkpoint import check_state_dict
    from seem.errors import CheckpointError

    with torch.device("meta"):
        large = build_seem(registry.get_variant("seem_samvitl_v1").config)
        base = build_seem(registry.get_variant("seem_samvitb_v1").config).state_dict()
    with pytest.raises(CheckpointError) as err:
        check_state_dict(large, base)
    msg = str(err.value)
    assert "backbone embed_dim 768 (model: 1024)" in msg and "vit depth 12 (model: 24)" in msg
    assert "It matches the registered variant(s) seem_samvitb_v1;" in msg
