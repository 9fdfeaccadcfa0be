#!/usr/bin/env python3
"""Run an exported model on audio files and print the API's JSON; imports no torch.

Loads the audio, extracts the features the model's metadata names, runs onnxruntime:
the same code path as ``ser predict`` (``ser.runtime``, which the service uses too):

    python export_scripts/test_onnx_model.py --model_path runs/demo/model/model.int8.onnx \
        --audio_path clip.wav [--timeline]
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--model_path", required=True, help=".onnx file written by `ser export`")
    p.add_argument("--audio_path", required=True, nargs="+", help="WAV/FLAC/OGG/MP3 file(s)")
    p.add_argument("--timeline", action="store_true", help="per-window emotions (long recordings)")
    args = p.parse_args(argv)

    from ser.cli import main as ser_main

    return ser_main(["predict", "--model", args.model_path, *args.audio_path, *(["--timeline"] if args.timeline else [])])


if __name__ == "__main__":
    sys.exit(main())
