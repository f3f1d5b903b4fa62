"""The parity checks catch a wrong weight: one entry of one official tensor moved by 0.01 makes the SAM-ViT fixture's
image features miss the official ones by more than the 1e-4 tolerance (and the untouched weights do not).

Each mutation targets a part whose zero-initialised or small weights a re-implementation could get away with
ignoring (relative positions of a global block, the absolute position embedding, a deformable sampling offset, a
level embedding) or a neck layer.
"""

from __future__ import annotations

import pytest
import torch

from _fixture import (
    fixture_backbone,
    fixture_pixel_decoder,
    image_names,
    load_tensors,
    max_abs_diff,
    model_input,
    require_fixture,
)

TOL = 1e-4
MUTATIONS = {  # official key -> index of the entry moved by +0.01
    "backbone.blocks.1.attn.rel_pos_h": (15, 0),  # global block: relative offset 0 along y
    "backbone.pos_embed": (0, 3, 5, 0),
    "backbone.neck.down_4.3.weight": (0, 0, 0, 0),
    "sem_seg_head.pixel_decoder.transformer.encoder.layers.0.self_attn.sampling_offsets.bias": (0,),
    "sem_seg_head.pixel_decoder.transformer.level_embed": (2, 0),
}


def _worst_feature_diff(path, weights) -> float:
    backbone, decoder = fixture_backbone(path, weights), fixture_pixel_decoder(path, weights)
    name = image_names(path)[0]
    expected = load_tensors(path / f"features_{name}.safetensors")
    with torch.no_grad():
        out = decoder(backbone(model_input(path, name)))
    diffs = [max_abs_diff(out.mask_features, expected["pixel_decoder.mask_features"])]
    diffs += [max_abs_diff(m, expected[f"pixel_decoder.multi_scale_features.{i}"])
              for i, m in enumerate(out.multi_scale_features)]
    return max(diffs)


@pytest.fixture(scope="module")
def samvit():
    path = require_fixture("samvit")
    return path, load_tensors(path / "model.safetensors")


def test_official_weights_pass(samvit):
    path, weights = samvit
    assert _worst_feature_diff(path, weights) <= TOL


@pytest.mark.parametrize("key", sorted(MUTATIONS))
def test_one_wrong_weight_fails_parity(samvit, key):
    path, weights = samvit
    mutated = dict(weights)
    mutated[key] = weights[key].clone()
    mutated[key][MUTATIONS[key]] += 0.01
    assert _worst_feature_diff(path, mutated) > TOL
