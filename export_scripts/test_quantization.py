#!/usr/bin/env python3
"""int8 quantization of an ensemble bundle, and the precision comparison table.

Without --compare: export fp32 + static int8 (as ``ser export``). With --compare: also
dynamic int8, then one table of size, latency (1 and 2 threads), test accuracy/UAR,
argmax agreement and max probability difference for PyTorch fp32, ONNX fp32, ONNX int8
static and ONNX int8 dynamic on the bundle's test speakers:

    python export_scripts/test_quantization.py --compare --model_path runs/demo/ensemble/bundle \
        --output_dir runs/demo/model --corpus synthetic --data data/synthetic
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model_path", required=True, help="bundle folder written by `ser ensemble` (OUT/bundle)")
    p.add_argument("--output_dir", required=True, help="folder with (or for) the ONNX files")
    p.add_argument("--corpus", required=True, help="corpus the bundle was trained on")
    p.add_argument("--data", required=True, help="its folder")
    p.add_argument("--cache", default="feature_cache", help="feature cache folder")
    p.add_argument("--compare", action="store_true", help="measure all four precisions and print the table")
    p.add_argument("--repeats", type=int, default=30, help="timed batch-1 runs per model and thread count")
    p.add_argument("--markdown", default=None, help="also write the table to this file")
    args = p.parse_args(argv)

    if not args.compare:
        from ser.cli import main as ser_main

        return ser_main(["export", "--bundle", args.model_path, "--out", args.output_dir, "--quantize", "static",
                         "--corpus", args.corpus, "--data", args.data, "--cache", args.cache])

    from ser.export import ExportError
    from ser.export.compare import compare_precisions, precision_table

    try:
        rows = compare_precisions(args.model_path, args.output_dir, args.corpus, args.data, cache_dir=args.cache,
                                  repeats=args.repeats)
    except (ExportError, ValueError, FileNotFoundError) as e:
        print(f"test_quantization: error: {e}", file=sys.stderr)
        return 2
    table = precision_table(rows)
    print(table)
    out = Path(args.output_dir) / "quantization.json"
    out.write_text(json.dumps(rows, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(table)
    print(f"rows: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
