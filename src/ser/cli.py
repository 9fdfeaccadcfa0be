"""The ``ser`` command line: a thin shell over the package.

Each subcommand parses its flags and calls one public function; errors from bad input
are printed as one clear line (exit status 2), never as a traceback.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("ser")


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from .corpora import generate_synthetic, load_manifest, summarize

    out = generate_synthetic(args.out, speakers=args.speakers, per_emotion=args.per_emotion,
                             seed=args.seed, progress=not args.quiet)
    print(f"synthetic corpus written to {out}")
    print(summarize(load_manifest("synthetic", out)))
    return 0


def _cmd_data_download(args: argparse.Namespace) -> int:
    from .corpora import download_corpus

    out = download_corpus(args.corpus, args.out, progress=not args.quiet)
    print(f"{args.corpus} downloaded to {out}; next: ser data manifest {args.corpus} {out}")
    return 0


def _cmd_data_manifest(args: argparse.Namespace) -> int:
    from .corpora import load_manifest, summarize, write_manifest

    manifest = load_manifest(args.corpus, args.dir)
    print(summarize(manifest))
    if args.out:
        print(f"manifest written to {write_manifest(manifest, args.out)}")
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    from .cache import ClipConfig
    from .corpora import load_manifest
    from .featurize import extract_corpus, resolve_names

    names = resolve_names(args.features)
    manifest = load_manifest(args.corpus, args.data)
    clip = ClipConfig(seconds=args.seconds)
    chain = None
    if args.aug_copies:
        from .augment import AugmentConfig, waveform_augmentation

        chain = waveform_augmentation(AugmentConfig(seed=args.aug_seed)).to_dict()
    report = extract_corpus(manifest, names, clip=clip, cache_dir=args.cache, jobs=args.jobs,
                            progress=not args.quiet, augment=chain, copies=args.aug_copies)
    print(f"{report}  (cache: {args.cache})")
    return 0


def _train_config(args: argparse.Namespace, feature: str = "mel"):
    from .cache import ClipConfig
    from .train import TrainConfig

    return TrainConfig(feature=feature, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       patience=args.patience, seed=args.seed, augment=not args.no_augment,
                       aug_copies=args.aug_copies, clip=ClipConfig(seconds=args.seconds))


def _cmd_train(args: argparse.Namespace) -> int:
    from .corpora import load_manifest
    from .splits import speaker_split
    from .train import train_feature

    manifest = speaker_split(load_manifest(args.corpus, args.data), val=args.val, test=args.test,
                             seed=args.split_seed)
    out = args.out or Path("runs") / args.feature
    res = train_feature(manifest, _train_config(args, args.feature), out, cache_dir=args.cache,
                        tracking=not args.no_tracking, resume=args.resume, jobs=args.jobs,
                        progress=not args.quiet)
    test = res["test"]
    print(f"{args.feature}: best epoch {res['best_epoch']}, val UAR {res['val']['uar']:.3f}, "
          f"test UAR {test['uar']:.3f} [{test['ci']['uar'][0]:.3f}, {test['ci']['uar'][1]:.3f}], "
          f"test accuracy {test['accuracy']:.3f}; checkpoint {Path(out) / 'model.pt'}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare
    from .corpora import load_manifest

    manifest = load_manifest(args.corpus, args.data)
    board = compare(manifest, args.features, _train_config(args), args.out, folds=args.folds, val=args.val,
                    test=args.test, split_seed=args.split_seed, cache_dir=args.cache,
                    tracking=not args.no_tracking, jobs=args.jobs, progress=not args.quiet)
    print((Path(args.out) / "leaderboard.md").read_text())
    print(f"leaderboard, plots and runs in {args.out}")
    return 0


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from .ensemble import ensemble

    summary = ensemble(args.runs, args.out, top=args.top, trials=args.trials, features=args.features,
                       seed=args.seed, tracking=not args.no_tracking, progress=not args.quiet,
                       n_boot=args.n_boot)
    print((Path(args.out) / "ensemble.md").read_text())
    print(f"members {', '.join(summary['weights'])}; bundle in {summary['bundle']}; report and plots in {args.out}")
    return 0


def _add_training_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=20, help="maximum epochs (early stopping may end sooner)")
    p.add_argument("--batch-size", type=int, default=32, help="clips per step")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (one-cycle)")
    p.add_argument("--patience", type=int, default=6, help="epochs without val improvement before stopping")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--no-augment", action="store_true", help="no augmentation at all (waveform or feature)")
    p.add_argument("--aug-copies", type=int, default=4, help="cached waveform-augmented copies per training clip")
    p.add_argument("--val", type=float, default=0.15, help="fraction of speakers for validation")
    p.add_argument("--test", type=float, default=0.15, help="fraction of speakers for test")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the speaker split")
    p.add_argument("--no-tracking", action="store_true", help="no MLflow/TensorBoard logging")


def _default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def build_parser() -> argparse.ArgumentParser:
    from .corpora import CORPORA, DOWNLOADERS

    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="ser", description="Speech emotion recognition toolkit.",
                                     formatter_class=fmt)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="corpora: synthesize, download, inspect", formatter_class=fmt)
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    p = dsub.add_parser("synth", help="write the deterministic synthetic corpus", formatter_class=fmt)
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--speakers", type=int, default=8, help="number of speakers (actors)")
    p.add_argument("--per-emotion", type=int, default=4, help="clips per emotion per speaker")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    p.set_defaults(func=_cmd_data_synth)

    p = dsub.add_parser("download", help="download a corpus from its official source", formatter_class=fmt)
    p.add_argument("corpus", choices=sorted(DOWNLOADERS), help="corpus name")
    p.add_argument("--out", required=True, type=Path, help="target folder")
    p.set_defaults(func=_cmd_data_download)

    p = dsub.add_parser("manifest", help="read a corpus and print files, speakers, emotions",
                        formatter_class=fmt)
    p.add_argument("corpus", choices=CORPORA, help="corpus layout (manifest: DIR is a CSV file)")
    p.add_argument("dir", type=Path, help="corpus folder (or CSV file for 'manifest')")
    p.add_argument("--out", type=Path, default=None, help="also write the manifest as CSV here")
    p.set_defaults(func=_cmd_data_manifest)

    p = sub.add_parser("features", help="extract and cache features for a whole corpus", formatter_class=fmt)
    p.add_argument("--corpus", required=True, choices=CORPORA, help="corpus layout")
    p.add_argument("--data", required=True, type=Path, help="corpus folder (CSV file for 'manifest')")
    p.add_argument("--features", default="all", help="'all' or a comma list, e.g. mel,mfcc")
    p.add_argument("--cache", type=Path, default=Path("feature_cache"), help="cache folder")
    p.add_argument("--jobs", type=int, default=_default_jobs(), help="worker processes")
    p.add_argument("--seconds", type=float, default=3.0, help="clip length after silence trimming")
    p.add_argument("--aug-copies", type=int, default=0,
                   help="also cache K waveform-augmented copies of every clip (training uses them)")
    p.add_argument("--aug-seed", type=int, default=0, help="seed of the augmentation chain (= training --seed)")
    p.set_defaults(func=_cmd_features)

    def corpus_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--corpus", required=True, choices=CORPORA, help="corpus layout")
        p.add_argument("--data", required=True, type=Path, help="corpus folder (CSV file for 'manifest')")
        p.add_argument("--cache", type=Path, default=Path("feature_cache"), help="feature cache folder")
        p.add_argument("--jobs", type=int, default=_default_jobs(), help="feature extraction processes")
        p.add_argument("--seconds", type=float, default=3.0, help="clip length after silence trimming")

    p = sub.add_parser("train", help="train one ResNet18 on one representation", formatter_class=fmt)
    corpus_flags(p)
    p.add_argument("--feature", required=True, help="representation name, e.g. mel")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/FEATURE)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/resume.pt if present")
    _add_training_flags(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("compare", help="the representation study: one model each, one leaderboard",
                       formatter_class=fmt)
    corpus_flags(p)
    p.add_argument("--features", default="all", help="'all' or a comma list")
    p.add_argument("--out", required=True, type=Path, help="study folder")
    p.add_argument("--folds", type=int, default=None, help="k leave-speakers-out folds instead of one split")
    _add_training_flags(p)
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("ensemble", help="Optuna-weighted ensemble of the best runs of a study, calibrated, bundled",
                       formatter_class=fmt)
    p.add_argument("--runs", required=True, type=Path, help="a `ser compare` study folder (single split) or its runs/")
    p.add_argument("--top", type=int, default=3, help="members: the best runs by validation UAR")
    p.add_argument("--features", default=None, help="members by name instead, e.g. mel,mfcc,chroma")
    p.add_argument("--trials", type=int, default=100, help="total Optuna trials (a re-run with more continues)")
    p.add_argument("--out", required=True, type=Path, help="output folder (report, plots, optuna.db, bundle/)")
    p.add_argument("--seed", type=int, default=0, help="TPE sampler, stacking and bootstrap seed")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (whole speakers) for test CIs")
    p.add_argument("--no-tracking", action="store_true", help="no MLflow logging")
    p.set_defaults(func=_cmd_ensemble)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    # imported only when a command failed: the error types pull in librosa and torch
    from .audio import AudioError
    from .checkpoint import CheckpointError
    from .corpora import CorpusError
    from .corpora.download import DownloadError
    from .ensemble import EnsembleError
    from .features import FeatureError
    from .splits import SplitError

    return (AudioError, CorpusError, DownloadError, SplitError, FeatureError, CheckpointError, EnsembleError,
            FileNotFoundError, PermissionError)


def main(argv: list[str] | None = None) -> int:
    """Run the ``ser`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except _user_errors() as e:
        print(f"ser: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ser: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
