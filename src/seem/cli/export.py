"""``seem export onnx``: the image encoder and the click decoder as ONNX files (fp32 and int8) for annotation tools."""

from __future__ import annotations

import argparse
from pathlib import Path

from seem.cli.common import verbose_parent


def add_parser(subparsers) -> None:
    exp = subparsers.add_parser("export", parents=[verbose_parent()], help="export a model for other runtimes",
                                description="Export a model for other runtimes.")
    formats = exp.add_subparsers(dest="format", metavar="FORMAT")
    formats.required = True
    onnx = formats.add_parser("onnx", parents=[verbose_parent()], help="encoder.onnx + decoder.onnx (fp32) and decoder.int8.onnx",
                              description="Write encoder.onnx, decoder.onnx and decoder.int8.onnx, which reads encoder.onnx's outputs "
                              "(opset 17; dynamic image size and number of clicks). See the README's ONNX section "
                              "for their inputs and outputs. Needs pip install 'seem-torch[onnx]'.")
    onnx.add_argument("--model", default="seem_tiny", metavar="NAME",
                      help="registry name or checkpoint path (default: seem_tiny, bundled)")
    onnx.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory (created)")
    onnx.add_argument("--no-int8", dest="int8", action="store_false", help="write only the fp32 files")


def run(args: argparse.Namespace) -> int:
    from seem.errors import require

    require("onnx", "onnx")
    require("onnxruntime", "onnx")
    from seem.hub import from_pretrained
    from seem.onnx.export import export_onnx

    files = export_onnx(from_pretrained(args.model), args.out, int8=args.int8)
    for path in (files.encoder, files.decoder, files.decoder_int8):
        if path is not None:
            print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
