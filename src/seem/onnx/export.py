"""Export a SEEM model to ONNX for annotation tools: ``encoder.onnx`` + ``decoder.onnx`` (fp32) and an int8
decoder (``decoder.int8.onnx``, onnxruntime dynamic quantization of its FFN weights, run on the fp32 encoder's
outputs; see :func:`_quantize`).

Uses PyTorch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): it needs only the
``onnx`` package, while the torch.export-based exporter (PyTorch >= 2.9's default) needs ``onnxscript`` too
and cannot trace the data-dependent number of click pixels (``nonzero``) without rewrites. Opset 17.
Dynamic axes: the image's height and width (multiples of 32) and the number of clicks.

Needs the ``onnx`` extra (``pip install 'seem-torch[onnx]'``: onnx, onnxruntime).
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from seem.errors import SeemError, require
from seem.modeling.seem import Seem
from seem.onnx.graphs import ClickDecoderGraph, ImageEncoderGraph, cache_output_names

OPSET = 17
EXAMPLE_SIZE = (256, 320)  # traced image size (H_pad, W_pad); any multiple of 32 works at run time


@dataclass(frozen=True)
class OnnxFiles:
    """Paths written by :func:`export_onnx` (``decoder_int8`` None when not asked for). The int8 decoder runs
    on the fp32 encoder's outputs: there is no int8 encoder (see :func:`_quantize`)."""

    encoder: Path
    decoder: Path
    decoder_int8: Path | None


def _metadata(model: Seem, vocabulary: tuple[str, ...], seed: int) -> dict[str, str]:
    c = model.config
    return {"seem.vocabulary": json.dumps(list(vocabulary)), "seem.pixel_mean": json.dumps(list(c.pixel_mean)),
            "seem.pixel_std": json.dumps(list(c.pixel_std)), "seem.size_divisibility": str(c.size_divisibility),
            "seem.shorter_side": str(c.test_shorter_side), "seem.max_size": str(c.test_max_size),
            "seem.seed": str(seed), "seem.spatial_queries": json.dumps(spatial_query_indices(c, seed).tolist()),
            "seem.prompt_connected_masks": str(int(c.inference.prompt_connected_masks)),
            "seem.click_fit": json.dumps({"margin": c.inference.click_fit_margin, "prior": c.inference.click_fit_prior,
                                          "max_iter": c.inference.click_fit_iters,
                                          "logit_weight": c.inference.click_fit_logit_weight} if c.inference.click_fit else None)}


def _add_metadata(path: Path, metadata: dict[str, str]) -> None:
    onnx = require("onnx", "onnx")
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def _check_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".seem-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SeemError(f"cannot write to the output directory {out_dir}: {exc.strerror or exc}") from None


def spatial_query_indices(config, seed: int = 0) -> torch.Tensor:
    """``(Ns,)`` int64 the object queries a one-object click round copies into its spatial queries, as the
    predictor's decoder does (:meth:`seem.modeling.decoder.SeemDecoder.assemble_queries`): all of them for a v0
    decoder or ``InferenceConfig.spatial_queries == "all"``, else ``query_number`` drawn by a sampler seeded with
    ``seed`` (the predictor's default seed: the same draw)."""
    from seem.modeling.visual_sampler import RandomSampler

    d = config.decoder
    if d.version != "v1" or config.inference.spatial_queries == "all":
        return torch.arange(d.num_queries)
    return RandomSampler(seed).sample_query_indices(d.num_queries, d.query_number)


def export_onnx(model: Seem, out_dir: str | Path, *, int8: bool = True, seed: int = 0,
                vocabulary: tuple[str, ...] | None = None) -> OnnxFiles:
    """Write ``encoder.onnx`` and ``decoder.onnx`` (and ``decoder.int8.onnx``) for ``model`` into ``out_dir``.

    Args:
        model: a built :class:`Seem` (its weights are exported; it is not changed).
        out_dir: created if missing.
        int8: also write an onnxruntime-quantized decoder (int8 FFN weights, dynamic activation scales; see
            :func:`_quantize`), used with the fp32 encoder. Files of ours this call does not write
            (``encoder.int8.onnx`` of earlier versions, ``decoder.int8.onnx`` without ``int8``) are removed
            from ``out_dir``, so no stale file pairs with the new ones.
        seed: the :class:`~seem.modeling.visual_sampler.RandomSampler` seed whose spatial-query draw is baked
            into the decoder (``SeemPredictor``'s default is 0, so its masks are reproduced).
        vocabulary: label names of ``label_ids`` (default: the predictor's default vocabulary); stored in the
            files' metadata as ``seem.vocabulary`` (JSON list).

    Raises:
        MissingDependencyError: onnx / onnxruntime not installed. SeemError: ``out_dir`` not writable.
    """
    require("onnx", "onnx")
    from seem.predictor import SeemPredictor

    out = Path(out_dir)
    _check_out_dir(out)
    model = model.eval()
    pred = SeemPredictor(model, vocabulary, vocabulary_cache_dir=None, seed=seed)
    names = tuple(pred.vocabulary)
    cfg = model.config.decoder
    query_indices = spatial_query_indices(model.config, seed)
    with torch.inference_mode():
        emb = pred.vocabularies.get(names + ("background",)).float()
    cache_names = cache_output_names(cfg.num_layers, cfg.num_feature_levels)
    encoder = ImageEncoderGraph(model).eval()
    decoder = ClickDecoderGraph(model, query_indices, emb).eval()
    image = torch.randn(1, 3, *EXAMPLE_SIZE)
    with torch.no_grad():
        cache = encoder(image)
    files = OnnxFiles(out / "encoder.onnx", out / "decoder.onnx", out / "decoder.int8.onnx" if int8 else None)
    for stale in (out / "encoder.int8.onnx", None if int8 else out / "decoder.int8.onnx"):
        if stale is not None and stale.is_file():
            stale.unlink()
    spatial = {2: "height", 3: "width"}
    enc_axes = {"image": {2: "height_pad", 3: "width_pad"}, "mask_features": {2: "height_4", 3: "width_4"}}
    for name in cache_names[1:]:
        enc_axes[name] = {1: "pixels"} if name.startswith(("keys", "values")) else dict(spatial)
    dec_inputs = ["point_coords", "point_labels", "image_size", *cache_names]
    dec_axes = dict(enc_axes, point_coords={0: "clicks"}, point_labels={0: "clicks"},
                    mask_logits={1: "height_4", 2: "width_4"})
    dec_axes.pop("image")
    clicks = (torch.tensor([[100.0, 80.0], [150.0, 120.0]]), torch.tensor([1.0, 0.0]), torch.tensor(EXAMPLE_SIZE))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings on shape arithmetic, the legacy exporter's deprecation
        torch.onnx.export(encoder, (image,), str(files.encoder), input_names=["image"], output_names=cache_names,
                          dynamic_axes=enc_axes, opset_version=OPSET, dynamo=False)
        torch.onnx.export(decoder, (*clicks, *cache), str(files.decoder), input_names=dec_inputs,
                          output_names=["mask_logits", "label_ids", "scores", "mask_embed"], dynamic_axes=dec_axes,
                          opset_version=OPSET, dynamo=False)
    meta = _metadata(model, names, seed)
    for path in (files.encoder, files.decoder):
        _add_metadata(path, meta)
    if int8:
        _quantize(files)
    return files


def _quantize(files: OnnxFiles) -> None:
    """onnxruntime dynamic quantization of the decoder, per-channel int8 weights, on the MatMuls of its
    transformer layers: the FFN layers' weights (the attention projections export as ``Gemm``, which the dynamic
    quantizer does not handle, so they stay fp32, unlike ``SeemPredictor(precision="int8")``). ``mask_embed``
    (the mask itself), the visual sampler's ``spatial_token_proj`` and the ``class_embed`` projection stay fp32:
    with them in int8 the tests' two-click case fell to IoU 0.945 against PyTorch on one machine (0.973
    without them). No int8 encoder: its time is the convolutions (int8 convolutions moved masks far: IoU
    0.02-0.83 on the demo clicks), and int8 weights in its one transformer layer alone cost IoU 0.92-0.95."""
    onnx = require("onnx", "onnx")
    quantization = require("onnxruntime.quantization", "onnx")
    assert files.decoder_int8 is not None  # only called when int8 files were asked for
    graph = onnx.load(str(files.decoder)).graph
    weights = {t.name for t in graph.initializer}
    layers = [n.name for n in graph.node  # weight MatMuls of the transformer layers (the FFNs, see above)
              if n.op_type == "MatMul" and n.name.startswith("/transformer_") and any(i in weights for i in n.input)]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer warns on every tensor whose shape it cannot infer
    try:
        quantization.quantize_dynamic(str(files.decoder), str(files.decoder_int8), per_channel=True,
                                      weight_type=quantization.QuantType.QInt8, nodes_to_quantize=layers)
    finally:
        root.setLevel(level)
