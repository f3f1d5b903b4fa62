"""Hostile-load benchmark of ``seem serve``: click latency for normal users while attackers send the
requests of issue 13 (prints numbers; exits 1 on any 5xx).

Starts uvicorn on 127.0.0.1 with the bundled model. ``--clients`` normal clients each click on their own
session (one click every ``--think`` seconds) for ``--seconds``; the same run is made twice: alone (the
baseline) and with ``--attackers`` threads looping over a fixed hostile mix:

* a mask RLE of 27 million characters (``POST /v1/predict``; refused from the body size);
* 30 rounds of a valid 300k-character RLE mask on one session object (kept as one union);
* a panoptic request with a new vocabulary of 256 long names (embedded in slices between clicks);
* a JSON body with 2.4 million points (refused from its size before decoding);
* a cross-origin multipart image upload (refused by the Origin check).

Prints p50 / p99 click latency for both runs, the hostile requests' status codes, the number of 5xx and the
peak RSS of the process (server + clients). Bounded: ``--seconds`` per run.

Usage::

    python benchmarks/hostile_load.py --clients 4 --attackers 2 --seconds 30
"""

from __future__ import annotations

import argparse
import io
import itertools
import resource
import socket
import statistics
import sys
import threading
import time
from collections import Counter

import numpy as np


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _image(seed: int, h: int = 480, w: int = 640) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rgb = np.full((h, w, 3), 40, np.uint8)
    for _ in range(6):
        y, x = rng.integers(0, h - 100), rng.integers(0, w - 100)
        rgb[y:y + 100, x:x + 100] = rng.integers(60, 255, 3)
    return rgb


def _striped_rle(h: int, w: int) -> dict:
    """A valid RLE of about 300k characters: one-pixel stripes."""
    from seem.io import mask_to_rle

    mask = np.zeros((h, w), bool)
    mask[::2, :] = True
    return mask_to_rle(mask)


def hostile_mix(base: str, image_id: str, stop: threading.Event, codes: Counter) -> None:
    import httpx

    h, w = 480, 640
    names = [f"{i:03d} " + "very long class name " * 7 for i in range(256)]
    stripes = _striped_rle(h, w)
    with httpx.Client(base_url=base, timeout=120) as c:
        for k in itertools.count():
            if stop.is_set():
                return
            kind = k % 5
            if kind == 0:
                body = {"image_id": image_id, "masks": [{"size": [h, w], "counts": "1" * 27_000_000}]}
                r = c.post("/v1/predict", json=body)
            elif kind == 1:
                sid = c.post("/v1/sessions", json={"image_id": image_id}).json()["session_id"]
                for _ in range(30):
                    if stop.is_set():
                        break
                    r = c.post(f"/v1/sessions/{sid}/prompts", json={"mask": stripes})
                    codes[f"mask round {r.status_code}"] += 1
                continue
            elif kind == 2:
                r = c.post("/v1/panoptic", json={"image_id": image_id, "vocabulary": [n + str(k) for n in names[:40]]})
            elif kind == 3:
                r = c.post("/v1/predict", content=b'{"image_id": "x", "points": [' + b"[1, 2]," * 2_400_000 + b"[1, 2]]}",
                           headers={"content-type": "application/json"})
            else:
                r = c.post("/v1/images", files={"file": ("x.png", _png(_image(k)), "image/png")},
                           headers={"Origin": "https://evil.example"})
            codes[f"{['huge RLE', '', 'vocabulary', '2.4M points', 'cross-origin'][kind]} {r.status_code}"] += 1


def clicker(base: str, image_id: str, seconds: float, think: float, out: list[float], codes: Counter) -> None:
    import httpx

    rng = np.random.default_rng(len(out))
    with httpx.Client(base_url=base, timeout=120) as c:
        sid = c.post("/v1/sessions", json={"image_id": image_id}).json()["session_id"]
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            x, y = float(rng.integers(0, 640)) + 0.5, float(rng.integers(0, 480)) + 0.5
            t0 = time.perf_counter()
            r = c.post(f"/v1/sessions/{sid}/prompts", json={"points": [[x, y]], "new_object": True})
            if r.status_code == 422:  # the session's object cap: start another
                sid = c.post("/v1/sessions", json={"image_id": image_id}).json()["session_id"]
                continue
            codes[f"click {r.status_code}"] += 1
            out.append((time.perf_counter() - t0) * 1000)
            time.sleep(think)


def run(base: str, ids: list[str], args, hostile: bool) -> tuple[list[float], Counter]:
    latencies: list[float] = []
    codes: Counter = Counter()
    stop = threading.Event()
    attackers = [threading.Thread(target=hostile_mix, args=(base, ids[0], stop, codes), daemon=True)
                 for _ in range(args.attackers if hostile else 0)]
    clients = [threading.Thread(target=clicker, args=(base, ids[1 + i % (len(ids) - 1)], args.seconds, args.think,
                                                      latencies, codes)) for i in range(args.clients)]
    for t in attackers + clients:
        t.start()
    for t in clients:
        t.join()
    stop.set()
    for t in attackers:
        t.join(timeout=180)
    return latencies, codes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--attackers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--think", type=float, default=0.2, help="seconds between a client's clicks")
    args = parser.parse_args(argv)

    import httpx
    import uvicorn

    from seem import SeemPredictor
    from seem.server import create_app

    predictor = SeemPredictor.from_pretrained(None, vocabulary_cache_dir=None)
    app = create_app(predictor, model_name="seem_tiny")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    ids = [httpx.post(f"{base}/v1/images", files={"file": (f"{i}.png", _png(_image(i)), "image/png")},
                      timeout=60).json()["image_id"] for i in range(1 + args.clients)]
    results = {name: run(base, ids, args, hostile) for name, hostile in (("baseline", False), ("hostile", True))}
    server.should_exit = True
    thread.join(timeout=10)

    errors = 0
    print(f"{'run':<10}{'clicks':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, (lat, codes) in results.items():
        q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [float("nan")] * 99
        print(f"{name:<10}{len(lat):>8}{q[49]:>10.1f}{q[98]:>10.1f}{max(lat, default=float('nan')):>10.1f}")
        errors += sum(n for k, n in codes.items() if k.endswith(tuple(f" 5{d:02d}" for d in range(100))))
    print("hostile requests by kind and status:", dict(sorted(results["hostile"][1].items())))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"5xx: {errors}; peak RSS {peak:.0f} MiB (server + clients, one process)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
