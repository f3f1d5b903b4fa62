"""Time to embed COCO's panoptic vocabulary (133 classes + "background", x 81 prompt templates = 10,854
sentences) with a model's text encoder, and to read it back from the vocabulary cache (prints, never asserts).

``TextEncoder.embed_vocabulary`` sorts the sentences by length and runs each batch only up to its longest
prompt: the encoder is causal, so the end-of-text embedding does not depend on the padding after it (the
official code pads all 10,854 sentences to 77 tokens: 424 s on this 2-core CPU for Focal-T). A second
``SeemPredictor`` asking for the same vocabulary reads it from the disk cache.

Usage: python benchmarks/bench_vocabulary.py [--models seem_focalt_v1,seem_tiny]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from seem import SeemPredictor, build_seem
from seem.registry import get_variant
from seem.vocabularies import COCO_PANOPTIC_CLASSES, display_name


def load(name: str):
    if name == "seem_tiny":
        from seem import from_pretrained

        return from_pretrained("seem_tiny")
    torch.manual_seed(0)
    return build_seem(get_variant(name).config).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="seem_focalt_v1,seem_tiny")
    args = ap.parse_args()
    names = [display_name(c) for c in COCO_PANOPTIC_CLASSES] + ["background"]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; {len(names)} classes")
    for name in args.models.split(","):
        model = load(name)
        with torch.inference_mode():
            t0 = time.perf_counter()
            model.text_encoder.embed_vocabulary(names, model.tokenizer)
            line = f"{name:<16} embed {time.perf_counter() - t0:6.1f} s"
        with tempfile.TemporaryDirectory() as cache:
            SeemPredictor(model, vocabulary=names[:-1], vocabulary_cache_dir=cache).vocabularies.get(tuple(names))
            t0 = time.perf_counter()
            SeemPredictor(model, vocabulary=names[:-1], vocabulary_cache_dir=cache).vocabularies.get(tuple(names))
            line += f"   from the disk cache {1000 * (time.perf_counter() - t0):6.1f} ms"
        print(line, flush=True)


if __name__ == "__main__":
    main()
