#!/usr/bin/env python3
"""Export an ensemble bundle to ONNX (fp32 + int8), checked against PyTorch.

A thin shell over ``ser export`` (``ser.export.export_bundle``), with the flag names of the
project's origin:

    python export_scripts/export_to_onnx.py --model_path runs/demo/ensemble/bundle \
        --output_dir runs/demo/model --corpus synthetic --data data/synthetic
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model_path", required=True, help="bundle folder written by `ser ensemble` (OUT/bundle)")
    p.add_argument("--output_dir", required=True, help="folder for model.onnx, model.int8.onnx, export.json")
    p.add_argument("--quantize", default="static", choices=("static", "dynamic", "none", "both"), help="int8 flavour")
    p.add_argument("--corpus", default=None, help="corpus the bundle was trained on (needed for static int8)")
    p.add_argument("--data", default=None, help="its folder")
    p.add_argument("--cache", default="feature_cache", help="feature cache folder")
    args = p.parse_args(argv)

    from ser.cli import main as ser_main

    corpus = ["--corpus", args.corpus] if args.corpus else []
    data = ["--data", args.data] if args.data else []
    return ser_main(["export", "--bundle", args.model_path, "--out", args.output_dir, "--quantize", args.quantize,
                     "--cache", args.cache, *corpus, *data])


if __name__ == "__main__":
    sys.exit(main())
