"""The official Focal-T size builds and runs end to end on a tiny image (random weights, CPU); v0 = a flag."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from seem import SeemPredictor, build_seem
from seem.modeling.decoder import QueryGroup, SeemDecoder
from seem.registry import get_variant


def test_official_focal_t_runs_every_prompt_type_and_v0_is_a_flag():
    torch.manual_seed(0)
    config = get_variant("seem_focalt_v1").config
    assert get_variant("seem_focalt_v0").config == replace(config, decoder=replace(config.decoder, version="v0"))
    model = build_seem(config)
    assert sum(p.numel() for p in model.parameters()) > 150e6  # the real Focal-T size (~165M)
    image = np.random.default_rng(0).integers(0, 255, (70, 100, 3), dtype=np.uint8)
    p = SeemPredictor(model, vocabulary=["cat", "dog"], shorter_side=None, vocabulary_cache_dir=None)
    p.set_image(image)
    assert p.frame.padded_size == (96, 128)
    first = p.predict(points=[[50, 35]])
    second = p.predict(points=[[50, 35], [10, 10]], point_labels=[1, 0], memory=first)
    assert second.masks.shape == (1, 70, 100) and second.labels[0] in ("cat", "dog")
    two = p.predict(boxes=[[0, 0, 40, 40], [50, 30, 99, 69]], text="a cat")
    assert two.masks.shape == (2, 70, 100)
    text = p.predict(text=["a cat", "the dog"])
    assert text.masks.shape == (2, 70, 100)
    assert p.segment_everything(kind="panoptic").segmentation.shape == (70, 100)

    v0 = SeemDecoder(replace(config.decoder, version="v0"))
    v0.load_state_dict(model.decoder.state_dict())  # same parameters: v0 vs v1 is behaviour only
    with torch.inference_mode():
        prompt = v0.encode_visual_prompt(p.features.levels, p.features.mask_features, torch.ones(1, 96, 128, dtype=torch.bool),
                                         torch.zeros(1, 96, 128, dtype=torch.bool), p.sampler())
        out = v0(p.features.multi_scale_features, p.features.mask_features, visual=prompt, levels=p.features.levels)
    s, e = out.ranges[QueryGroup.SPATIAL]
    assert e - s == config.decoder.num_queries  # v0 copies every object query for the prompted object
