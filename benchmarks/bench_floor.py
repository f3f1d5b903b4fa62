"""Prompt rounds against this CPU's memory-bandwidth floor (prints, never asserts).

A prompt round with the image cached reads the decoder's weights, the cached image keys/values of every
layer and the mask features once, for a handful of query rows: it is bound by memory bandwidth. For a click,
a box and a text round this script prints, per model and precision:

* the bytes the round must read: decoder weights it uses (the cross-attention key/value projections are not
  read: the cache replaces them; a text round also reads the text encoder), cached keys/values, mask
  features (each level-sized copy once per layer that attends to that level, plus the full-resolution
  features once, for the returned mask);
* this machine's memory bandwidth, measured in the same run and interleaved with the rounds: a copy of a
  256 MB fp32 tensor (bytes read + bytes written over its time);
* the floor: bytes / bandwidth, in ms; the measured time (median, wall clock) and measured / floor.

Usage::

    python benchmarks/bench_floor.py                                   # seem_tiny, Focal-T, Focal-L at 512 px
    python benchmarks/bench_floor.py --models seem_focalt_v1 --threads 1 --repeats 30

Models as in ``bench_latency.py``: registry names with random weights (only the architecture matters for
bytes and time), ``seem_tiny`` with its bundled weights. Every precision of one model shares one model and
one image; rounds, precisions and the bandwidth copy are interleaved within each repeat, so machine load
hits all of them alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from seem import SeemPredictor
from seem.modeling.int8 import Int8Linear, Int8MultiheadAttention
from seem.modeling.layers import CrossAttentionLayer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_latency import cpu_name, load_model, test_image

COPY_MB = 256
ROUNDS = ("click", "box", "text")
PRECISIONS = ("fp32", "bf16-all", "int8")


def nbytes(t: Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


def module_bytes(module: nn.Module) -> int:
    """Bytes of the weights a prompt round reads from ``module`` (int8 layers: their int8 weights and scales)."""
    total = 0
    for m in module.modules():
        if isinstance(m, Int8Linear):
            total += nbytes(m.weight_int8) + nbytes(m.weight_scales) + nbytes(m.bias)
        elif not isinstance(m, Int8MultiheadAttention):
            total += sum(nbytes(p) for p in m.parameters(recurse=False))
    return total


def decoder_weight_bytes(pred: SeemPredictor, text: bool) -> int:
    """Decoder weights of one prompt round: all but the image side (input projections, level embeddings) and the
    cross-attention key/value projections; the visual prompt projection for visual prompts."""
    dec = pred.decoding_model.decoder
    total = module_bytes(dec) - sum(module_bytes(m) for m in dec.input_proj) - nbytes(dec.level_embed.weight)
    for layer in dec.transformer_cross_attention_layers:
        attn = layer.multihead_attn if isinstance(layer, CrossAttentionLayer) else None
        if isinstance(attn, Int8MultiheadAttention):
            total -= module_bytes(attn.k_proj) + module_bytes(attn.v_proj)
        elif attn is not None:
            total -= nbytes(attn.in_proj_weight) * 2 // 3 + nbytes(attn.in_proj_bias) * 2 // 3
    if text:
        total -= module_bytes(dec.spatial_token_proj)
        text_encoder = pred.decoding_model.text_encoder  # fp32, or its bf16 copy in bf16-all
        total += module_bytes(text_encoder.transformer) - nbytes(text_encoder.transformer.token_embedding.weight)
    return total


def round_bytes(pred: SeemPredictor, text: bool) -> dict[str, int]:
    """Bytes one prompt round reads: weights, cached keys/values, mask features (see the module docstring)."""
    feats = pred.features
    assert feats is not None and feats.cache is not None
    cache = feats.cache
    layers = len(cache.keys)
    levels = len(cache.level_mask_features)
    level_reads = sum(nbytes(cache.level_mask_features[i % levels]) for i in range(1, layers))
    return {"weights": decoder_weight_bytes(pred, text),
            "kv": sum(nbytes(k) + nbytes(v) for k, v in zip(cache.keys, cache.values)),
            "mask_features": level_reads + nbytes(feats.mask_features)}


def copy_gbps() -> Callable[[], float]:
    """A function that copies a 256 MB fp32 tensor and returns (bytes read + written) / time in GB/s."""
    src = torch.randn(COPY_MB * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)

    def run() -> float:
        t0 = time.perf_counter()
        dst.copy_(src)
        return 2 * nbytes(src) / (time.perf_counter() - t0) / 1e9

    return run


def measure_model(name: str, size: int, precisions: list[str], repeats: int) -> list[dict[str, Any]]:
    model = load_model(name)
    image = test_image(size)
    h, w = image.shape[:2]
    cx, cy = w // 2, h // 2
    preds = {}
    for p in precisions:
        pred = SeemPredictor(model, vocabulary=["object"], shorter_side=size, max_size=None, vocabulary_cache_dir=None,
                             precision=p)
        pred.vocabularies.get(tuple(pred.vocabulary) + ("background",))
        pred.set_image(image)
        preds[p] = pred
    rounds: dict[str, Callable[[SeemPredictor], object]] = {
        "click": lambda pr: pr.predict(points=[[cx, cy]]),
        "box": lambda pr: pr.predict(boxes=[[w // 4, h // 4, 3 * w // 4, 3 * h // 4]]),
        "text": lambda pr: pr.predict(text="the object"),
    }
    bandwidth = copy_gbps()
    times: dict[tuple[str, str], list[float]] = {(p, r): [] for p in preds for r in rounds}
    gbps: list[float] = []
    for i in range(repeats + 1):  # the first pass warms up
        for p, pred in preds.items():
            for r, fn in rounds.items():
                t0 = time.perf_counter()
                fn(pred)
                if i:
                    times[p, r].append(time.perf_counter() - t0)
            if i:
                gbps.append(bandwidth())
    bw = statistics.median(gbps)
    rows = []
    for (p, r), ts in times.items():
        b = round_bytes(preds[p], text=r == "text")
        total = sum(b.values())
        floor_ms = total / (bw * 1e9) * 1e3
        ms = statistics.median(ts) * 1e3
        rows.append({"model": name, "size": size, "image": f"{w}x{h}", "precision": p, "round": r,
                     **{f"{k}_mb": v / 1e6 for k, v in b.items()}, "total_mb": total / 1e6, "bandwidth_gbps": bw,
                     "floor_ms": floor_ms, "measured_ms": ms, "ratio": ms / floor_ms})
    return rows


HEADER = ("| model | precision | round | weights MB | keys/values MB | mask features MB | total MB | GB/s | floor ms "
          "| measured ms | measured/floor |")


def markdown_row(r: dict[str, Any]) -> str:
    return (f"| {r['model']} | {r['precision']} | {r['round']} | {r['weights_mb']:.1f} | {r['kv_mb']:.1f} | "
            f"{r['mask_features_mb']:.1f} | {r['total_mb']:.1f} | {r['bandwidth_gbps']:.1f} | {r['floor_ms']:.1f} | "
            f"{r['measured_ms']:.1f} | {r['ratio']:.2f} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="seem_tiny,seem_focalt_v1,seem_focall_v1")
    ap.add_argument("--size", type=int, default=512, help="shorter image side in pixels")
    ap.add_argument("--precisions", default=",".join(PRECISIONS))
    ap.add_argument("--repeats", type=int, default=15, help="timed rounds per number (median, after one warm-up)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = args.precisions.split(",")
    bad = set(precisions) - set(PRECISIONS)
    if bad:
        ap.error(f"unknown precision(s) {sorted(bad)}; choose from {PRECISIONS}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, CPU {cpu_name()}", flush=True)
    print(HEADER)
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    rows = []
    for name in args.models.split(","):
        for row in measure_model(name, args.size, precisions, args.repeats):
            rows.append(row)
            print(markdown_row(row), flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
