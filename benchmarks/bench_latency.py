"""Encode once, answer many prompts: image-encode time vs time per prompt round (prints, never asserts).

Usage: python benchmarks/bench_latency.py [--size 512] [--repeats 5] [--models fixture,seem_focalt_v1]

``fixture`` is the parity-fixture model (reduced dims); registry names are built with random weights
(no download): only the architecture matters for timing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from seem import SeemPredictor, build_seem
from seem.registry import get_variant

REPO = Path(__file__).resolve().parents[1]


def load(name: str):
    if name == "fixture":
        from seem.hub import build_from_pretrained

        fixture = Path(os.environ.get("SEEM_PARITY_FIXTURE", REPO.parent / "shared" / "reference" / "seem_v1_tiny"))
        return build_from_pretrained(fixture / "model.safetensors")
    torch.manual_seed(0)
    return build_seem(get_variant(name).config)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=512, help="image side in pixels (square image)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", default="fixture,seem_focalt_v1")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, image {args.size}x{args.size}")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (args.size, args.size, 3), dtype=np.uint8)
    print(f"{'model':<16}{'params M':>10}{'encode ms':>11}{'click ms':>10}{'click+mem ms':>14}{'generic ms':>12}")
    for name in args.models.split(","):
        model = load(name)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        pred = SeemPredictor(model, vocabulary=["object"], shorter_side=args.size, max_size=None)
        encode = timed(lambda: pred.set_image(image), args.repeats)
        pred.set_image(image)
        c = args.size // 2
        with torch.inference_mode():
            first = pred.predict(points=[[c, c]])
            click = timed(lambda: pred.predict(points=[[c, c]]), args.repeats)
            mem = timed(lambda: pred.predict(points=[[c, c], [c // 2, c // 2]], point_labels=[1, 0], memory=first), args.repeats)
            generic = timed(lambda: model.decode(pred.features), args.repeats)
        print(f"{name:<16}{params:>10.1f}{encode:>11.1f}{click:>10.1f}{mem:>14.1f}{generic:>12.1f}")


if __name__ == "__main__":
    main()
