#!/usr/bin/env python3
"""Export an ensemble bundle to ONNX (fp32 + int8), checked against PyTorch.

A thin shell over ``ser.export.export_bundle`` (the same as ``ser export``):

    python export_scripts/export_to_onnx.py --model_path runs/demo/ensemble/bundle \
        --output_dir runs/demo/model --corpus synthetic --data data/synthetic
"""
from __future__ import annotations

import argparse
import json
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

    from ser.export import ExportError, export_bundle

    try:
        report = export_bundle(args.model_path, args.output_dir, quantize=args.quantize, corpus=args.corpus,
                               data=args.data, cache_dir=args.cache)
    except (ExportError, ValueError, FileNotFoundError) as e:
        print(f"export_to_onnx: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: report[k] for k in ("files", "sizes_mb", "parity", "int8_vs_fp32")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
