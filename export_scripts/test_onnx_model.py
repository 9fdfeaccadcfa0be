#!/usr/bin/env python3
"""Run an exported model on audio files and print the API's JSON; imports no torch.

Loads the audio, extracts the features the model's metadata names, runs onnxruntime
(``ser.export.runtime``, the service's code path):

    python export_scripts/test_onnx_model.py --model_path runs/demo/model/model.int8.onnx \
        --audio_path clip.wav [--timeline]
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--model_path", required=True, help=".onnx file written by `ser export`")
    p.add_argument("--audio_path", required=True, nargs="+", help="WAV/FLAC/OGG/MP3 file(s)")
    p.add_argument("--timeline", action="store_true", help="per-window emotions (long recordings)")
    args = p.parse_args(argv)

    from ser.audio import AudioError
    from ser.export.runtime import ModelError, load_model

    try:
        model = load_model(args.model_path)
    except ModelError as e:
        print(f"test_onnx_model: error: {e}", file=sys.stderr)
        return 2
    status = 0
    for path in args.audio_path:
        try:
            answer = model.timeline(path) if args.timeline else model.predict(path)
        except AudioError as e:
            print(f"test_onnx_model: error: {e}", file=sys.stderr)
            status = 2
            continue
        print(json.dumps({"file": path, **answer}, indent=1))
    return status


if __name__ == "__main__":
    sys.exit(main())
