"""`make demo`: run the `seem` CLI end to end on a real photo.

Until the bundled, trained `seem_tiny` model exists (issue 4), the only weights available offline are the
parity-fixture weights: the official SEEM v1 architecture at reduced size with *seeded random* weights
(../shared/reference/seem_v1_tiny). Every stage runs for real (image loading, resize/pad, FocalNet,
pixel decoder, text encoder, visual sampler, SEEM decoder, post-processing, PNG/RLE/polygon/overlay
output), but the masks carry no meaning. Set SEEM_DEMO_MODEL to a registry name or checkpoint path to
run the same job with real weights (e.g. `seem_focalt_v1` with internet access).
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


def fixture_model() -> str:
    fixture = Path(os.environ.get("SEEM_PARITY_FIXTURE", REPO.parent / "shared" / "reference" / "seem_v1_tiny"))
    return str(fixture / "model.safetensors")


def photo() -> Path:
    """A real photo that installs offline: scikit-image's astronaut (NASA, public domain), 512 x 512."""
    from skimage import data

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def run(*args: str) -> None:
    cmd = [str(Path(sys.executable).with_name("seem")), *args]
    print("\n$ " + shlex.join(["seem", *args]), flush=True)
    subprocess.run(cmd, check=True)


def main() -> int:
    model = os.environ.get("SEEM_DEMO_MODEL") or fixture_model()
    if "SEEM_DEMO_MODEL" not in os.environ:
        print(
            "NOTE: no trained default model is bundled yet (issue 4). This demo runs the real pipeline with the\n"
            f"parity-fixture weights ({model}): the official SEEM v1 architecture, reduced size, seeded RANDOM\n"
            "weights. Masks and labels are therefore not meaningful; shapes, files and timings are real."
        )
    image = photo()
    scribble = np.zeros((512, 512), dtype=np.uint8)
    scribble[300:306, 180:330] = 255  # a horizontal stroke across the suit
    Image.fromarray(scribble).save(OUT / "scribble.png")
    vocab = "person,rocket,flag,wall,sky,helmet"
    common = ["--model", model, "--vocab", vocab, "--format", "png,rle,polygon,overlay"]
    run("segment", str(image), "--point", "255,170", *common, "--out", str(OUT / "click"))
    run("segment", str(image), "--box", "140,20,380,300", *common, "--out", str(OUT / "box"))
    run("segment", str(image), "--scribble", str(OUT / "scribble.png"), *common, "--out", str(OUT / "scribble"))
    run("segment", str(image), "--text", "the astronaut's face", *common, "--out", str(OUT / "text"))
    run("segment", str(image), "--text", "the astronaut", "--point", "255,170", *common, "--out", str(OUT / "text_click"))
    run("panoptic", str(image), "--model", model, "--vocab", "coco", "--out", str(OUT / "panoptic"))
    print(f"\nOutputs are in {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
