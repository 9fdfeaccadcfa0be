"""The ``ser`` command line: a thin shell over the package.

Each subcommand parses its flags and calls one public function; errors from bad input
are printed as one clear line (exit status 2), never as a traceback. The flags live in
:mod:`ser.cli.parser`, the subcommands in :mod:`ser.cli.train_commands` (corpora,
features, training, studies) and :mod:`ser.cli.model_commands` (ensembles, export,
robustness, prediction, serving); this module wires them together and runs them.

Example:
    >>> build_parser().parse_args(["train", "--corpus", "synthetic", "--data", "d", "--feature", "mel"]).epochs
    20
    >>> main(["data", "manifest", "ravdess", "absent"])  # one `ser: error:` line on stderr, no traceback
    2
"""
from __future__ import annotations

import argparse
import logging
import sys

from ..errors import SerError
from .model_commands import (cmd_client as _cmd_client, cmd_ensemble as _cmd_ensemble, cmd_export as _cmd_export,
                             cmd_predict as _cmd_predict, cmd_robustness as _cmd_robustness,
                             cmd_serve as _cmd_serve)
from .parser import make_parser
from .train_commands import (cmd_compare as _cmd_compare, cmd_data_download as _cmd_data_download,
                             cmd_data_manifest as _cmd_data_manifest, cmd_data_synth as _cmd_data_synth,
                             cmd_features as _cmd_features, cmd_layers as _cmd_layers, cmd_sweep as _cmd_sweep,
                             cmd_train as _cmd_train, train_config as _train_config)

__all__ = ["build_parser", "main"]
# the subcommands and train_config stay reachable under their former names here (ser.cli._cmd_train, ...)


def build_parser() -> argparse.ArgumentParser:
    """The ``ser`` argument parser; ``args.func`` is the subcommand to run."""
    # the handlers are looked up here when the parser is built, so patching ``ser.cli._cmd_*`` takes effect
    return make_parser({
        "data synth": _cmd_data_synth, "data download": _cmd_data_download, "data manifest": _cmd_data_manifest,
        "features": _cmd_features, "train": _cmd_train, "compare": _cmd_compare, "layers": _cmd_layers,
        "sweep": _cmd_sweep, "ensemble": _cmd_ensemble, "export": _cmd_export, "robustness": _cmd_robustness,
        "predict": _cmd_predict, "serve": _cmd_serve, "client": _cmd_client,
    })


# bad input, not a bug: printed as one line (every user-facing error derives from SerError)
_USER_ERRORS = (SerError, FileNotFoundError, PermissionError)


def main(argv: list[str] | None = None) -> int:
    """Run the ``ser`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    # our loggers at the chosen level; other libraries' (e.g. onnxruntime's quantizer, which
    # logs every tensor at INFO on the root logger) at WARNING
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("ser").setLevel(level)
    try:
        return int(args.func(args) or 0)
    except _USER_ERRORS as e:
        print(f"ser: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ser: interrupted", file=sys.stderr)
        return 130
