"""The model side of the ``ser`` command line: ensembles, export, robustness, prediction, serving.

One function per subcommand, each calling one public function of the package; the heavy
imports are inside them (``predict``, ``serve`` and ``client`` load no torch at all).

Example:
    >>> from ser.cli import main
    >>> main(["predict", "--model", "absent.onnx", "clip.wav"])  # one `ser: error:` line on stderr
    2
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_ensemble(args: argparse.Namespace) -> int:
    """``ser ensemble``: the weighted ensemble of a study's best runs."""
    from ..ensemble import fit_ensemble

    # a single split is fitted and bundled; --folds studies (one or several): fitted per fold, tested pooled
    summary = fit_ensemble(args.runs, args.out, top=args.top, features=args.features, trials=args.trials,
                           seed=args.seed, objective=args.objective, n_boot=args.n_boot,
                           tracking=not args.no_tracking, progress=not args.quiet)
    print((Path(args.out) / "ensemble.md").read_text())
    if "bundle" in summary:
        print(f"members {', '.join(summary['members'])}; bundle in {summary['bundle']}; report and plots in {args.out}")
    else:
        print(f"members {', '.join(summary['members'])} in {summary['folds']} folds; no bundle (a fold study "
              f"estimates the recipe; for a deployable model run it on a single split); report in {args.out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``ser export``: the bundle as ONNX (fp32 and int8), checked against PyTorch."""
    from ..export.onnx_export import export_bundle

    report = export_bundle(args.bundle, args.out, quantize=args.quantize, corpus=args.corpus, data=args.data,
                           cache_dir=args.cache, calibration_clips=args.calibration_clips, opset=args.opset,
                           encoder_paths=dict(args.encoder_path or ()), progress=not args.quiet)
    for kind, path in report["files"].items():
        print(f"{kind:>13}: {path}  ({report['sizes_mb'][kind]:.1f} MB)")
    parity = report["parity"]
    print(f"ONNX fp32 vs PyTorch on {parity['n']} inputs: max |dp| {parity['max_abs_diff']:.2e}, "
          f"argmax agreement {parity['argmax_agreement']:.1%}")
    print(f"report: {Path(args.out) / 'export.json'}; try: ser predict --model {report['files'][report['serve']]} "
          "AUDIO.wav")
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    """``ser robustness``: a model clean and under each degradation condition."""
    from ..robustness import robustness_report
    from ..robustness.files import markdown_table

    table = robustness_report(args.model, bundle=args.bundle, runs=args.runs, member=args.member, corpus=args.corpus,
                              data=args.data, conditions=args.conditions, out_dir=args.out, seed=args.seed,
                              n_boot=args.boot, test_speakers=args.test_speakers, babble_clips=args.babble_clips,
                              jobs=args.jobs, threads=args.threads, encoder_paths=dict(args.encoder_path or ()),
                              progress=not args.quiet)
    print(markdown_table(table))
    print(f"report, plot and per-class recall in {table.attrs['out_dir']}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """``ser predict``: one JSON line per audio file; a file that cannot be read is one error line."""
    import json

    from ..audio import AudioError, DecodeLimits, load_audio
    from ..runtime import load_model

    model = load_model(args.model, threads=args.threads)  # a malformed model: one line naming the field
    limits = DecodeLimits(max_seconds=args.max_seconds)
    failed = 0
    for path in args.audio:
        try:
            y = load_audio(path, model.sample_rate, limits)  # streamed: memory bounded by max_seconds
            if args.timeline:
                answer = model.timeline(y, window=args.window, hop=args.hop)
            else:
                answer = model.predict(y)
        except (AudioError, MemoryError) as e:
            reason = e if isinstance(e, AudioError) else f"{path}: not enough memory to analyse it"
            print(f"ser: error: {reason}", file=sys.stderr)
            failed += 1
            continue
        print(json.dumps({"file": str(path), **answer}))
    return 2 if failed else 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``ser serve``: the HTTP service (no torch)."""
    from ..serve import Limits, serve

    # checked before anything loads: contradicting limits are one line, not a traceback
    limits = Limits(max_bytes=int(args.max_mb * 1024 * 1024), max_seconds=args.max_seconds,
                    min_seconds=args.min_seconds, max_parts=args.max_parts, body_timeout=args.body_timeout,
                    request_timeout=args.request_timeout)
    serve(args.model, host=args.host, port=args.port, workers=args.workers, threads=args.threads, limits=limits,
          header_timeout=args.header_timeout, keep_alive=args.keep_alive, max_connections=args.max_connections,
          allowed_hosts=_names(args.allowed_hosts), cors_origins=_names(args.cors_origins),
          forwarded_allow_ips=args.forwarded_allow_ips)
    return 0


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(x.strip() for x in (text or "").split(",") if x.strip())


def cmd_client(args: argparse.Namespace) -> int:
    """``ser client``: send files to a running service and print its answers."""
    from ..serve.client import run_client

    return run_client(args.audio, url=args.url, timeline=args.timeline, timeout=args.timeout)
