"""``seem label`` at scale on generated images: 1 process vs 2 gloo processes (torchrun), and a run killed
halfway (SIGKILL) then restarted, each compared byte for byte with the uninterrupted single-process output.

    python benchmarks/label_scale.py [--images 200] [--size 160] [--work /tmp/seem_label_scale]

Prints images/s of each run and whether the COCO files (instances.json, panoptic.json, every panoptic PNG)
are identical. Every process uses one torch thread (the same numerics in every run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from seem.labeling.distributed import label_command

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["--text", "person", "--text", "car"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _cmd(src: Path, out: Path, nproc: int) -> list[str]:
    return label_command(nproc) + [str(src), *TEXTS, "--out", str(out), "--threads", "1", "--no-progress"]


def _run(src: Path, out: Path, nproc: int) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run(_cmd(src, out, nproc), env=_env(), capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"seem label failed:\n{r.stderr[-3000:]}")
    return time.perf_counter() - t, r.stdout


def _outputs(out: Path) -> dict[str, bytes]:
    files = {n: (out / n).read_bytes() for n in ("instances.json", "panoptic.json")}
    files.update({f"panoptic/{p.name}": p.read_bytes() for p in sorted((out / "panoptic").iterdir())})
    return files


def _killed_halfway(src: Path, out: Path, n: int) -> float:
    """Starts a single-process run, SIGKILLs it once half the part files exist, restarts it; total seconds."""
    t = time.perf_counter()
    proc = subprocess.Popen(_cmd(src, out, 1), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = out / "parts"
    while proc.poll() is None and (not parts.is_dir() or len(list(parts.glob("*.json"))) < n // 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(parts.glob("*.json")))
    print(f"killed after {done} of {n} part files")
    _, stdout = _run(src, out, 1)
    print("  restart: " + stdout.strip().splitlines()[0])
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--work", default="/tmp/seem_label_scale")
    args = ap.parse_args()
    from PIL import Image

    from seem.data.scenes import SceneConfig, SceneGenerator

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    src = work / "images"
    src.mkdir(parents=True)
    gen = SceneGenerator(SceneConfig(size=args.size))
    for i in range(args.images):
        Image.fromarray(gen.sample(10_000 + i).image).save(src / f"scene_{i:05d}.png")
    results = {}
    for name, nproc in (("1 process", 1), ("2 gloo processes", 2)):
        seconds, stdout = _run(src, work / name.replace(" ", "_"), nproc)
        results[name] = work / name.replace(" ", "_")
        print(f"{name}: {seconds:.1f} s wall ({args.images / seconds:.2f} images/s incl. start-up)")
        for line in stdout.strip().splitlines():
            print("  " + line)
    seconds = _killed_halfway(src, work / "killed", args.images)
    print(f"killed + restarted: {seconds:.1f} s wall")
    reference = _outputs(results["1 process"])
    n_annotations = reference["instances.json"].count(b'"category_id"')
    print(f"{len(reference) - 2} panoptic PNGs, {n_annotations} instance annotations")
    print("2 gloo processes identical to 1 process:", _outputs(results["2 gloo processes"]) == reference)
    print("killed-and-restarted identical to uninterrupted:", _outputs(work / "killed") == reference)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
