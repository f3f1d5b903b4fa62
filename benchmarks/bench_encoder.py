"""Where a new image's encode time goes: backbone, pixel decoder and the decoder's per-image cache, against
this machine's matmul peak measured in the same process (prints, never asserts).

    python benchmarks/bench_encoder.py                                   # seem_focalt_v1 + seem_tiny, 512 px
    python benchmarks/bench_encoder.py --models seem_focalt_v1 --precisions bf16 --threads 2 --repeats 5

For each (model, precision) the real ``SeemPredictor.encode`` path runs (``precision=`` fp32 / bf16 / bf16-all,
the VOC photo resized to shorter side ``--size``: 683x512 at 512); forward hooks on the backbone and the pixel
decoder stamp the time, so the stages add up to the encode: ``pre`` (uint8 -> normalised padded tensor),
``backbone``, ``pixel decoder``, ``cache`` (the decoder's level features and per-image key/value cache,
:meth:`seem.modeling.seem.Seem.cache_features`, plus dtype casts). Medians over ``--repeats`` encodes after
one warm-up. FLOPs are counted once per model in fp32 with ``FlopCounterMode`` (convs, matmuls, attention):
``GFLOP/s`` = encoder FLOPs / encode time, ``% peak`` = that / the ``2048 x 2048`` matmul throughput in the
precision's dtype (bf16 for bf16 and bf16-all), measured just before the model's rows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_latency import DTYPES, flop_counter, load_model, matmul_gflops_per_s, test_image
from seem import SeemPredictor
from seem.modeling.precision import encoding_copy
from seem.transforms import plan_frame, preprocess_image

STAGES = ("pre", "backbone", "pixel decoder", "cache")


def encoder_gflop(model, image) -> dict[str, float]:
    """FLOPs of each encoder stage on ``image`` (fp32; the count does not depend on the dtype)."""
    frame = plan_frame(image.shape[:2], None, None, model.config.size_divisibility)
    x = preprocess_image(image, frame, model.pixel_mean, model.pixel_std)

    def count(fn):
        with flop_counter() as counter:
            result = fn()
        return counter.get_total_flops() / 1e9, result

    with torch.inference_mode():
        backbone, feats = count(lambda: model.backbone(x))
        pixel, out = count(lambda: model.pixel_decoder(feats))
        cache, _ = count(lambda: model.decoder.build_cache(model.decoder.prepare_features(out.multi_scale_features),
                                                            out.mask_features))
    return {"backbone": backbone, "pixel decoder": pixel, "cache": cache}


def stage_times(pred: SeemPredictor, image, repeats: int) -> dict[str, float]:
    """Median ms of each stage of ``pred.encode(image)`` (hooks on the encoding model's modules)."""
    stamps: dict[str, float] = {}
    model = getattr(pred, "encoding_model", pred.model)
    hooks = [
        model.backbone.register_forward_pre_hook(lambda *_: stamps.__setitem__("b0", time.perf_counter())),
        model.backbone.register_forward_hook(lambda *_: stamps.__setitem__("b1", time.perf_counter())),
        model.pixel_decoder.register_forward_hook(lambda *_: stamps.__setitem__("p1", time.perf_counter())),
    ]
    rows: list[dict[str, float]] = []
    try:
        for k in range(repeats + 1):
            t0 = time.perf_counter()
            pred.encode(image)
            t1 = time.perf_counter()
            if k:  # the first call warms up (allocator, oneDNN kernels, lazily made bf16 copies)
                rows.append({"pre": stamps["b0"] - t0, "backbone": stamps["b1"] - stamps["b0"],
                             "pixel decoder": stamps["p1"] - stamps["b1"], "cache": t1 - stamps["p1"],
                             "total": t1 - t0})
    finally:
        for h in hooks:
            h.remove()
    return {key: statistics.median(r[key] for r in rows) * 1000 for key in rows[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="seem_focalt_v1,seem_tiny")
    parser.add_argument("--precisions", default="fp32,bf16,bf16-all")
    parser.add_argument("--size", type=int, default=512, help="shorter image side, pixels")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--direct", action="store_true",
                        help="also time each precision with the pixel decoder's convs direct (no Winograd), same run")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    image = test_image(args.size)
    print(f"image {image.shape[1]}x{image.shape[0]}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    header = f"{'model':16} {'precision':15} " + " ".join(f"{s:>13}" for s in STAGES)
    print(header + f" {'total ms':>9} {'GFLOP':>6} {'GFLOP/s':>8} {'peak':>6} {'% peak':>6}")
    for name in args.models.split(","):
        model = load_model(name)
        flops = encoder_gflop(model, image)
        total_flop = sum(flops.values())
        peaks = {dt: matmul_gflops_per_s(dt, 5) for dt in {DTYPES[p] for p in args.precisions.split(",")}}
        for precision in args.precisions.split(","):
            for direct in (False, True) if args.direct else (False,):
                pred = SeemPredictor(model, vocabulary=["object"], shorter_side=args.size, max_size=None,
                                     vocabulary_cache_dir=None, precision=precision)
                if direct:  # the same encoder copy, every conv left direct
                    bf16 = precision in ("bf16", "bf16-all") and getattr(model.backbone, "supports_bf16", True)
                    pred._encoding_model = encoding_copy(model, torch.bfloat16 if bf16 else torch.float32,
                                                         winograd_min_channels=1 << 30)
                ms = stage_times(pred, image, args.repeats)
                rate = total_flop / (ms["total"] / 1000)
                peak = peaks[DTYPES[precision]]
                label = precision + (" direct" if direct else "")
                print(f"{name:16} {label:15} " + " ".join(f"{ms[s]:13.0f}" for s in STAGES)
                      + f" {ms['total']:9.0f} {total_flop:6.0f} {rate:8.0f} {peak:6.0f} {100 * rate / peak:6.0f}")
        print(f"{'':26} GFLOP: " + ", ".join(f"{s} {v:.1f}" for s, v in flops.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
