"""Named variants: names, lookups with suggestions, and the official values they carry."""

from __future__ import annotations

import dataclasses

import pytest

from seem.configs import ViTConfig
from seem.errors import ConfigError
from seem.registry import (
    PretrainedVariant,
    get_config,
    get_variant,
    iter_variants,
    list_models,
    variant_for_filename,
)

NAMES = ["seem_focall_v0", "seem_focall_v1", "seem_focalt_v0", "seem_focalt_v1", "seem_samvitb_v1", "seem_samvitl_v1",
         "seem_tiny"]


def test_list_models_and_pattern():
    assert list_models() == NAMES
    assert list_models("*focalt*") == ["seem_focalt_v0", "seem_focalt_v1"]
    assert list_models("*_v1") == ["seem_focall_v1", "seem_focalt_v1", "seem_samvitb_v1", "seem_samvitl_v1"]
    assert list_models("nothing*") == []


@pytest.mark.parametrize("name", [n for n in NAMES if n != "seem_tiny"])
def test_every_variant_is_consistent(name):
    v = get_variant(name)
    assert isinstance(v, PretrainedVariant) and v.name == name
    assert v.hub_repo == "xdecoder/SEEM" and v.hub_filename == f"{name}.pt" and v.package_file is None
    assert v.license == "afl-3.0" and v.description and v.official_config.startswith("configs/seem/")
    c = v.config
    assert c.pixel_decoder.in_channels == c.backbone.out_channels
    assert c.decoder.version == name[-2:]
    assert (c.decoder.hidden_dim, c.decoder.num_queries, c.decoder.num_layers, c.decoder.num_heads) == (512, 101, 9, 8)
    assert (c.text.width, c.text.layers, c.text.heads, c.text.dim_proj) == (512, 12, 8, 512)
    assert (c.pixel_decoder.conv_dim, c.pixel_decoder.num_encoder_layers) == (512, 6)
    assert c.inference.object_mask_threshold == 0.8 and c.inference.detections_per_image == 100
    assert variant_for_filename(f"{name}.pt") is v


def test_backbone_values():
    t = get_variant("seem_focalt_v1").config.backbone
    assert (t.name, t.embed_dim, t.depths, t.focal_levels, t.focal_windows) == (
        "focal_dw",
        96,
        (2, 2, 6, 2),
        (3, 3, 3, 3),
        (3, 3, 3, 3),
    )
    large = get_variant("seem_focall_v1").config.backbone
    assert (large.name, large.embed_dim, large.depths, large.focal_levels, large.focal_windows) == (
        "focal",
        192,
        (2, 2, 18, 2),
        (4, 4, 4, 4),
        (3, 3, 3, 3),
    )
    assert large.out_channels == (192, 384, 768, 1536)
    assert get_variant("seem_focall_v0").config.backbone == large
    v0, v1 = get_variant("seem_focalt_v0").config, get_variant("seem_focalt_v1").config
    assert dataclasses.replace(v0, decoder=dataclasses.replace(v0.decoder, version="v1")) == v1


def test_samvit_values():
    """configs/seem/samvit{b,l}_unicl_lang_v1.yaml: D2ViT sizes per VIT.SIZE, the MSDeformAttn pixel decoder
    (FFN hard-coded 1024), inputs padded to 1024 (the ViT's position grid), REF.INPUT 1000 / 1024."""
    for name, sizes in (("seem_samvitb_v1", (768, 12, 12, (2, 5, 8, 11))),
                        ("seem_samvitl_v1", (1024, 24, 16, (5, 11, 17, 23)))):
        c = get_variant(name).config
        b = c.backbone
        assert isinstance(b, ViTConfig)
        assert (b.name, b.embed_dim, b.depth, b.num_heads, b.global_attn_indexes) == ("vit", *sizes)
        assert (b.window_size, b.patch_size, b.image_size, b.neck_out_dims) == (14, 16, 1024, (128, 256, 512, 1024))
        assert b.out_channels == (128, 256, 512, 1024)
        p = c.pixel_decoder
        assert (p.name, p.dim_feedforward, p.num_points, p.num_heads) == ("transformer_encoder_deform", 1024, 4, 8)
        assert (c.size_divisibility, c.test_shorter_side, c.test_max_size) == (1024, 1000, 1024)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ConfigError) as err:
        get_variant("seem_focal_v1")
    msg = str(err.value)
    assert "Unknown model 'seem_focal_v1'" in msg and "Did you mean" in msg and "'seem_focall_v1'" in msg
    with pytest.raises(ConfigError) as err:
        get_variant("zzz")
    assert "Did you mean" not in str(err.value) and "Available: " + ", ".join(NAMES) in str(err.value)


def test_variants_are_frozen_and_overridable():
    v = get_variant("seem_focalt_v1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.name = "other"  # type: ignore[misc]
    assert [x.name for x in iter_variants()] == ["seem_focalt_v1", "seem_focall_v1", "seem_samvitb_v1", "seem_samvitl_v1",
                                                 "seem_focalt_v0", "seem_focall_v0", "seem_tiny"]
    assert get_config("seem_focalt_v1", size_divisibility=64).size_divisibility == 64
    assert get_config("seem_focalt_v1") is v.config
    assert variant_for_filename("other.pt") is None


def test_seem_tiny_is_bundled_and_consistent():
    v = get_variant("seem_tiny")
    assert v.package_file == "assets/seem_tiny.safetensors" and v.hub_filename is None
    c = v.config
    assert c.backbone.name == "mobilenet_v2" and c.pixel_decoder.in_channels == c.backbone.out_channels
    assert c.text.dim_proj == c.decoder.hidden_dim == c.decoder.dim_proj
    assert c.pixel_decoder.mask_dim == c.decoder.mask_dim and c.pixel_decoder.conv_dim == c.decoder.in_channels
