"""Load test of ``seem serve``: many concurrent interactive sessions over HTTP (prints; exits 1 on errors).

Starts uvicorn on 127.0.0.1 (a free port) in a background thread with the bundled model, then runs
``--sessions`` client threads at once (``httpx``), each on its own generated scene image:
upload -> create session -> ``--rounds`` click rounds on the scene's largest object (clicks 1 and 3
positive inside it, click 2 negative on another segment). Checks:

* every request succeeds and every round's mask overlaps the clicked object (IoU > 0);
* no cross-talk: afterwards every session is replayed alone, one request at a time, on a new session
  (same bytes: the cached encoding), and the concurrent masks must equal the sequential ones exactly;
  masks of different images must differ (identical pairs are reported).

Prints errors, p50 / p95 latency of the upload and of each round (client wall time and the server's
``latency_ms``), the total time and the peak RSS of the process (server + clients: ``getrusage``).

Usage::

    python benchmarks/load_test_server.py --sessions 50
    python benchmarks/load_test_server.py --sessions 8 --rounds 3 --threads 1
"""

from __future__ import annotations

import argparse
import io
import resource
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Job:
    """One client session: its image, clicks and what came back."""

    index: int
    png: bytes
    gt: np.ndarray  # (H, W) bool, the clicked object
    clicks: list[tuple[list[float], int]]
    masks: list[np.ndarray] = field(default_factory=list)
    wall_ms: dict[str, float] = field(default_factory=dict)
    server_ms: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)  # the model's quality, not the server's: not errors


def _inside(mask: np.ndarray, avoid: np.ndarray | None = None) -> list[float]:
    """[x, y] of a pixel centre deep inside ``mask`` (away from ``avoid``)."""
    from scipy.ndimage import distance_transform_edt

    m = mask if avoid is None else mask & ~avoid
    if not m.any():
        m = mask
    r, c = np.unravel_index(np.argmax(distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]), m.shape)
    return [float(c) + 0.5, float(r) + 0.5]


def make_jobs(n: int, size: int) -> list[Job]:
    from PIL import Image

    from seem.data.scenes import SceneConfig, SceneGenerator

    gen = SceneGenerator(SceneConfig(size=size))
    jobs = []
    for i in range(n):
        s = gen.sample(1000 + i)
        areas = s.masks.reshape(len(s.masks), -1).sum(1)
        things = [k for k in range(len(areas)) if s.is_thing[k]] or list(range(len(areas)))
        k = max(things, key=lambda j: areas[j])
        other = max((j for j in range(len(areas)) if j != k), key=lambda j: areas[j], default=k)
        p1 = _inside(s.masks[k])
        near = np.zeros_like(s.masks[k])
        near[max(int(p1[1]) - 4, 0): int(p1[1]) + 5, max(int(p1[0]) - 4, 0): int(p1[0]) + 5] = True
        clicks = [(p1, 1), (_inside(s.masks[other]), 0), (_inside(s.masks[k], avoid=near), 1)]
        buf = io.BytesIO()
        Image.fromarray(s.image).save(buf, format="PNG")
        jobs.append(Job(i, buf.getvalue(), s.masks[k], clicks))
    return jobs


def run_session(base: str, job: Job, rounds: int, record: bool = True, barrier: threading.Barrier | None = None
                ) -> list[np.ndarray]:
    import httpx

    from seem.io import rle_to_mask

    masks = []
    with httpx.Client(base_url=base, timeout=600.0) as client:
        if barrier is not None:
            barrier.wait()

        def call(name: str, method: str, url: str, **kw) -> dict:
            t0 = time.perf_counter()
            r = client.request(method, url, **kw)
            if record:
                job.wall_ms[name] = (time.perf_counter() - t0) * 1000.0
            if r.status_code != 200:
                raise RuntimeError(f"{name}: HTTP {r.status_code}: {r.text[:200]}")
            return r.json()

        image_id = call("upload", "POST", "/v1/images", files={"file": ("scene.png", job.png, "image/png")})["image_id"]
        sid = call("session", "POST", "/v1/sessions", json={"image_id": image_id})["session_id"]
        for r in range(rounds):
            point, label = job.clicks[r % len(job.clicks)]
            body = call(f"round{r + 1}", "POST", f"/v1/sessions/{sid}/prompts",
                        json={"points": [point], "point_labels": [label]})
            mask = rle_to_mask(body["objects"][0]["rle"])
            masks.append(mask)
            if record:
                job.server_ms[f"round{r + 1}"] = body["latency_ms"]
                if not (mask & job.gt).any():
                    job.misses.append(f"session {job.index} round {r + 1}: mask misses the clicked object (IoU 0)")
        client.delete(f"/v1/sessions/{sid}")
    return masks


def _pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q / 100 * (len(v) - 1)))))] if v else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=256, help="generated scene size, pixels")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "bf16-all"))
    parser.add_argument("--no-verify", action="store_true", help="skip the sequential replay check")
    args = parser.parse_args(argv)

    import httpx
    import torch
    import uvicorn

    from seem import SeemPredictor
    from seem.server import create_app

    if args.threads:
        torch.set_num_threads(args.threads)
    jobs = make_jobs(args.sessions, args.size)
    predictor = SeemPredictor.from_pretrained(None, vocabulary_cache_dir=None, precision=args.precision)
    app = create_app(predictor, max_images=max(32, args.sessions), feature_budget_bytes=4 << 30,
                     max_sessions=max(256, 2 * args.sessions), model_name="seem_tiny")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    print(f"server {base}, torch threads {torch.get_num_threads()}, {args.sessions} sessions x {args.rounds} rounds, "
          f"{args.size}x{args.size} images, shorter side {predictor.shorter_side}, {args.precision}")

    barrier = threading.Barrier(len(jobs))

    def work(job: Job) -> None:
        try:
            job.masks = run_session(base, job, args.rounds, barrier=barrier)
        except Exception as exc:  # every failure is reported
            job.errors.append(f"session {job.index}: {type(exc).__name__}: {exc}")
            barrier.abort()

    t0 = time.perf_counter()
    workers = [threading.Thread(target=work, args=(job,)) for job in jobs]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    total_s = time.perf_counter() - t0

    errors = [e for job in jobs for e in job.errors]
    mismatches = 0
    if not args.no_verify:  # replay each session alone: the concurrent masks must be the sequential ones
        for job in jobs:
            if job.errors or len(job.masks) != args.rounds:
                continue
            try:
                alone = run_session(base, job, args.rounds, record=False)
            except Exception as exc:
                errors.append(f"replay of session {job.index}: {exc}")
                continue
            for r, (a, b) in enumerate(zip(job.masks, alone)):
                if not np.array_equal(a, b):
                    mismatches += 1
                    errors.append(f"session {job.index} round {r + 1}: concurrent mask != sequential mask (cross-talk?)")
    finals = {}
    for job in jobs:
        if job.masks:
            finals.setdefault(job.masks[-1].tobytes(), []).append(job.index)
    same = [v for v in finals.values() if len(v) > 1]
    if same:
        errors.append(f"identical final masks on different images: {same}")
    ious = [float((job.masks[-1] & job.gt).sum() / max((job.masks[-1] | job.gt).sum(), 1)) for job in jobs if job.masks]
    health = httpx.get(f"{base}/healthz").json()
    server.should_exit = True
    thread.join(timeout=10)

    print(f"\nerrors: {len(errors)}")
    for e in errors[:20]:
        print("  " + e)
    misses = [m for job in jobs for m in job.misses]
    print(f"model misses (a round's mask off the clicked object; quality of the model, not an error): {len(misses)}")
    print(f"total {total_s:.1f} s for {sum(len(j.masks) for j in jobs)} rounds of {len(jobs)} sessions; "
          f"replay mismatches {mismatches}; distinct final masks {len(finals)}/{len(jobs)}")
    if ious:
        print(f"IoU of the last mask with the clicked object: median {statistics.median(ious):.3f}, min {min(ious):.3f}")
    print(f"{'step':<10}{'n':>5}{'p50 ms':>10}{'p95 ms':>10}{'server p50':>12}{'server p95':>12}")
    for name in ["upload", "session"] + [f"round{r + 1}" for r in range(args.rounds)]:
        wall = [j.wall_ms[name] for j in jobs if name in j.wall_ms]
        srv = [j.server_ms[name] for j in jobs if name in j.server_ms]
        srv_txt = f"{_pct(srv, 50):>12.1f}{_pct(srv, 95):>12.1f}" if srv else f"{'-':>12}{'-':>12}"
        print(f"{name:<10}{len(wall):>5}{_pct(wall, 50):>10.1f}{_pct(wall, 95):>10.1f}{srv_txt}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"peak RSS {peak:.0f} MiB (server + clients, one process); cache: {health['images']} images, "
          f"{health['sessions']} live sessions")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
