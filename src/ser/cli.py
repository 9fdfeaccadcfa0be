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

from .argtypes import (fraction, nonnegative_float, nonnegative_int, port, positive_float, positive_int,
                       probability)
from .errors import SerError

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
    from .audio import ClipConfig
    from .corpora import load_manifest
    from .features import resolve_names
    from .cache import extract_corpus

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
    from .audio import ClipConfig
    from .augment import AugmentConfig
    from .train import TrainConfig

    return TrainConfig(feature=feature, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       patience=args.patience, seed=args.seed,
                       augment=AugmentConfig(enabled=not args.no_augment, copies=args.aug_copies,
                                             conditions=_condition_list(args.condition_aug)),
                       clip=ClipConfig(seconds=args.seconds), mixup=args.mixup,
                       dropout=args.dropout, weight_decay=args.weight_decay,
                       label_smoothing=args.label_smoothing, bf16=args.bf16, model=args.model,
                       encoder_path=str(args.encoder_path) if args.encoder_path else None,
                       channel=_channel(args.channel))


# checked when the config is built, before any data is read: a bad name is one `ser: error:` line (exit 2)
def _condition_list(text: str | None) -> tuple[str, ...]:
    from .augment import AugmentError
    from .augment.policy import check_conditions

    try:
        return check_conditions(text or ())
    except AugmentError as e:
        raise AugmentError(f"--condition-aug: {str(e).removeprefix('condition augmentation: ')}") from None


def _channel(text: str | None) -> str | None:
    from .degrade import DegradeError
    from .modelmeta import channel_spec

    try:
        return channel_spec(text) and text
    except DegradeError as e:
        raise DegradeError(f"--channel: {str(e).removeprefix('channel: ')}") from None


def _cmd_train(args: argparse.Namespace) -> int:
    from .corpora import load_manifest
    from .representations import resolve_representations
    from .splits import speaker_split
    from .train import train_feature

    (feature,) = resolve_representations([args.feature])  # checked before any data is read
    cfg = _train_config(args, feature)
    manifest = speaker_split(load_manifest(args.corpus, args.data), val=args.val, test=args.test,
                             seed=args.split_seed)
    out = args.out or Path("runs") / feature
    res = train_feature(manifest, cfg, out, cache_dir=args.cache,
                        tracking=not args.no_tracking, resume=args.resume, jobs=args.jobs,
                        progress=not args.quiet)
    test = res.test
    print(f"{feature}: best epoch {res.best_epoch}, val UAR {res.val['uar']:.3f}, "
          f"test UAR {test['uar']:.3f} [{test['ci']['uar'][0]:.3f}, {test['ci']['uar'][1]:.3f}], "
          f"test accuracy {test['accuracy']:.3f}; checkpoint {Path(out) / 'model.pt'}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .study import run_study
    from .corpora import load_manifest

    cfg = _train_config(args)  # bad flag values fail before any data is read
    run_study(load_manifest(args.corpus, args.data), args.features, cfg, args.out, folds=args.folds, val=args.val,
              test=args.test, split_seed=args.split_seed, cache_dir=args.cache,
              tracking=not args.no_tracking, jobs=args.jobs, progress=not args.quiet, resume=args.resume,
              parallel=args.parallel)
    print((Path(args.out) / "leaderboard.md").read_text())
    print(f"leaderboard, plots and runs in {args.out}")
    return 0


def _cmd_layers(args: argparse.Namespace) -> int:
    from .audio import ClipConfig
    from .corpora import load_manifest
    from .probe import probe_layers

    manifest = load_manifest(args.corpus, args.data)
    table = probe_layers(manifest, args.encoder, folds=args.folds, val=args.val, test=args.test,
                         split_seed=args.split_seed, clip=ClipConfig(seconds=args.seconds), cache_dir=args.cache,
                         out_dir=args.out, seed=args.seed, path=args.encoder_path, device=args.device,
                         batch_size=args.batch_size, progress=not args.quiet)
    print((Path(args.out) / "layers.md").read_text())
    print(f"chosen layer {int(table.loc[table['chosen'], 'layer'].iloc[0])} (best validation UAR); "
          f"table, plot and settings in {args.out}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    import json

    from .audio import ClipConfig
    from .augment import AugmentConfig
    from .corpora import load_manifest
    from .splits import speaker_split
    from .sweep import SweepError, check_grid, sweep
    from .train import TrainConfig

    try:
        grid = json.loads(Path(args.grid).read_text() if args.grid.endswith(".json") else args.grid)
    except (OSError, json.JSONDecodeError) as e:
        raise SweepError(f"--grid: not a JSON object or a readable .json file ({e})") from e
    check_grid(grid)  # before the corpus is read: a typo fails at once
    seeds = [int(x) for x in args.seeds.split(",")]
    base = TrainConfig(clip=ClipConfig(seconds=args.seconds), channel=_channel(args.channel),
                       augment=AugmentConfig(conditions=_condition_list(args.condition_aug)))
    manifest = speaker_split(load_manifest(args.corpus, args.data), val=args.val, test=args.test,
                             seed=args.split_seed)
    sweep(manifest, grid, args.features, args.out, seeds=seeds, base=base,
          cache_dir=args.cache, parallel=args.parallel, threads=args.threads, jobs=args.jobs, progress=not args.quiet)
    print((Path(args.out) / "sweep.md").read_text())
    return 0


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from .ensemble import fit_ensemble

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


def _cmd_export(args: argparse.Namespace) -> int:
    from .export.onnx_export import export_bundle

    report = export_bundle(args.bundle, args.out, quantize=args.quantize, corpus=args.corpus, data=args.data,
                           cache_dir=args.cache, calibration_clips=args.calibration_clips, opset=args.opset,
                           progress=not args.quiet)
    for kind, path in report["files"].items():
        print(f"{kind:>13}: {path}  ({report['sizes_mb'][kind]:.1f} MB)")
    parity = report["parity"]
    print(f"ONNX fp32 vs PyTorch on {parity['n']} inputs: max |dp| {parity['max_abs_diff']:.2e}, "
          f"argmax agreement {parity['argmax_agreement']:.1%}")
    print(f"report: {Path(args.out) / 'export.json'}; try: ser predict --model {report['files'][report['serve']]} "
          "AUDIO.wav")
    return 0


def _cmd_robustness(args: argparse.Namespace) -> int:
    from .robustness import robustness_report
    from .robustness.files import markdown_table

    table = robustness_report(args.model, bundle=args.bundle, runs=args.runs, member=args.member, corpus=args.corpus,
                              data=args.data, conditions=args.conditions, out_dir=args.out, seed=args.seed,
                              n_boot=args.boot, test_speakers=args.test_speakers, babble_clips=args.babble_clips,
                              jobs=args.jobs, threads=args.threads, progress=not args.quiet)
    print(markdown_table(table))
    print(f"report, plot and per-class recall in {table.attrs['out_dir']}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import json

    from .audio import AudioError, DecodeLimits, load_audio
    from .runtime import load_model

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


def _cmd_serve(args: argparse.Namespace) -> int:
    from .serve import Limits, serve

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


def _cmd_client(args: argparse.Namespace) -> int:
    from .serve.client import run_client

    return run_client(args.audio, url=args.url, timeline=args.timeline, timeout=args.timeout)


def _add_training_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=positive_int, default=20, help="maximum epochs (early stopping may end sooner)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="clips per step")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate (one-cycle)")
    p.add_argument("--patience", type=positive_int, default=6, help="epochs without val improvement before stopping")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="training seed")
    p.add_argument("--no-augment", action="store_true", help="no augmentation at all (waveform or feature)")
    p.add_argument("--aug-copies", type=nonnegative_int, default=4, help="cached waveform-augmented copies per training clip")
    _add_condition_flags(p)
    p.add_argument("--mixup", type=nonnegative_float, default=0.0, help="mixup Beta(a, a) parameter a (0 = off)")
    p.add_argument("--dropout", type=probability, default=0.3, help="dropout before the classifier")
    p.add_argument("--weight-decay", type=nonnegative_float, default=1e-2, help="AdamW decoupled weight decay")
    p.add_argument("--label-smoothing", type=probability, default=0.05, help="label smoothing of the loss")
    p.add_argument("--model", choices=("auto", "resnet18", "asp", "stats"), default="auto",
                   help="member head: auto = resnet18 for features, asp (attentive pooling) for encoder states")
    p.add_argument("--encoder-path", type=Path, default=None,
                   help="encoder weights (CTranslate2 folder or openai .pt) instead of the installed package")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast for training steps (about 2.5x faster on CPUs with AVX512-BF16/AMX)")
    _add_split_flags(p)
    p.add_argument("--no-tracking", action="store_true", help="no MLflow/TensorBoard logging")


def _add_condition_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--condition-aug", default=None, metavar="LIST",
                   help="each augmented copy also goes through one of these ser.degrade conditions, e.g. "
                        "telephone,gsm,opus,snr10 ('all': every one but clean and babble; babble is held out)")
    p.add_argument("--channel", default=None, metavar="NAME",
                   help="hear every clip (train, val, test, and served audio) through this condition: "
                        "telephone trains a model for phone calls")


def _add_split_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--val", type=fraction, default=0.15, help="fraction of speakers for validation")
    p.add_argument("--test", type=fraction, default=0.15, help="fraction of speakers for test")
    p.add_argument("--split-seed", type=nonnegative_int, default=0, help="seed of the speaker split")


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
    p.add_argument("--speakers", type=positive_int, default=8, help="number of speakers (actors)")
    p.add_argument("--per-emotion", type=positive_int, default=4, help="clips per emotion per speaker")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (same seed, same bytes)")
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
    p.add_argument("--jobs", type=positive_int, default=_default_jobs(), help="worker processes")
    p.add_argument("--seconds", type=positive_float, default=3.0, help="clip length after silence trimming")
    p.add_argument("--aug-copies", type=nonnegative_int, default=0,
                   help="also cache K waveform-augmented copies of every clip (training uses them)")
    p.add_argument("--aug-seed", type=nonnegative_int, default=0, help="seed of the augmentation chain (= training --seed)")
    p.set_defaults(func=_cmd_features)

    def corpus_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--corpus", required=True, choices=CORPORA, help="corpus layout")
        p.add_argument("--data", required=True, type=Path, help="corpus folder (CSV file for 'manifest')")
        p.add_argument("--cache", type=Path, default=Path("feature_cache"), help="feature cache folder")
        p.add_argument("--jobs", type=positive_int, default=_default_jobs(), help="feature extraction processes")
        p.add_argument("--seconds", type=positive_float, default=3.0, help="clip length after silence trimming")

    p = sub.add_parser("train", help="train one member (ResNet18 or pooled head) on one representation",
                       formatter_class=fmt)
    corpus_flags(p)
    p.add_argument("--feature", required=True,
                   help="a feature (mel, mfcc, ...) or an encoder layer (whisper_base@5; a bare name: its default layer)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/FEATURE)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/resume.pt if present")
    _add_training_flags(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("compare", help="the representation study: one model each, one leaderboard",
                       formatter_class=fmt)
    corpus_flags(p)
    p.add_argument("--features", default="all",
                   help="'all' (the eleven features) or a comma list of features and encoder layers: mel,whisper_base@5")
    p.add_argument("--out", required=True, type=Path, help="study folder")
    p.add_argument("--folds", type=positive_int, default=None, help="k leave-speakers-out folds instead of one split")
    p.add_argument("--resume", action="store_true",
                   help="continue runs from their resume.pt; finished runs are only re-tested")
    p.add_argument("--parallel", type=positive_int, default=1,
                   help="training runs at a time, one process each (a GPU or many cores)")
    _add_training_flags(p)
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("layers", help="linear probe of every layer of a pretrained encoder; layer chosen on validation",
                       formatter_class=fmt)
    p.add_argument("--encoder", required=True, help="encoder name: whisper_tiny_en or whisper_base")
    p.add_argument("--corpus", required=True, choices=CORPORA, help="corpus layout")
    p.add_argument("--data", required=True, type=Path, help="corpus folder (CSV file for 'manifest')")
    p.add_argument("--out", required=True, type=Path, help="output folder (layers.csv, layers.md, layers.png)")
    p.add_argument("--folds", type=positive_int, default=None, help="k leave-speakers-out folds instead of one split")
    p.add_argument("--cache", type=Path, default=Path("feature_cache"), help="feature cache folder (states are kept)")
    p.add_argument("--encoder-path", type=Path, default=None,
                   help="weights by path: a CTranslate2 Whisper folder or an openai-whisper .pt; none: the pinned packages")
    p.add_argument("--seconds", type=positive_float, default=3.0, help="clip length after silence trimming")
    p.add_argument("--device", default=None, help="torch device of the encoder; none: cuda when available, else cpu")
    p.add_argument("--batch-size", type=positive_int, default=16, help="clips per encoder call")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="classifier and bootstrap seed")
    _add_split_flags(p)
    p.set_defaults(func=_cmd_layers)

    p = sub.add_parser("sweep", help="training recipes x representations x seeds, ranked by validation UAR",
                       formatter_class=fmt)
    corpus_flags(p)
    p.add_argument("--features", default="mel,mfcc,delta_mfcc", help="'all' or a comma list")
    p.add_argument("--grid", required=True,
                   help='JSON object or .json file: recipe -> TrainConfig overrides, e.g. \'{"e40": {"epochs": 40}}\'')
    p.add_argument("--seeds", default="0", help="comma list of training seeds")
    p.add_argument("--out", required=True, type=Path, help="sweep folder (sweep.csv, sweep.md, the runs)")
    p.add_argument("--parallel", type=positive_int, default=1, help="runs at a time, one process each")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads per run")
    _add_condition_flags(p)
    _add_split_flags(p)
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("ensemble", help="Optuna-weighted ensemble of the best runs of a study, calibrated, bundled",
                       formatter_class=fmt)
    p.add_argument("--runs", required=True, type=Path, nargs="+",
                   help="a `ser compare` study folder or its runs/; a --folds study is fitted per fold and tested "
                        "pooled; several studies of the same split (or folds) pool their runs")
    p.add_argument("--top", type=positive_int, default=3, help="members: the best runs by validation UAR")
    p.add_argument("--features", default=None, help="members by name instead, e.g. mel,mfcc,chroma")
    p.add_argument("--trials", type=positive_int, default=100, help="total Optuna trials (a re-run with more continues)")
    p.add_argument("--objective", choices=("uar", "log_loss"), default="uar",  # = ser.ensemble.OBJECTIVES
                   help="what the weight search optimises on the validation clips")
    p.add_argument("--out", required=True, type=Path, help="output folder (report, plots, optuna.db, bundle/)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="TPE sampler, stacking and bootstrap seed")
    p.add_argument("--n-boot", type=nonnegative_int, default=1000, help="bootstrap resamples (whole speakers) for test CIs")
    p.add_argument("--no-tracking", action="store_true", help="no MLflow logging")
    p.set_defaults(func=_cmd_ensemble)

    p = sub.add_parser("export", help="the ensemble bundle as one ONNX graph, fp32 and int8, checked against PyTorch",
                       formatter_class=fmt)
    p.add_argument("--bundle", required=True, type=Path, help="bundle folder written by `ser ensemble` (OUT/bundle)")
    p.add_argument("--out", required=True, type=Path, help="output folder (model.onnx, model.int8.onnx, export.json)")
    p.add_argument("--quantize", choices=("static", "dynamic", "none", "both"), default="static",
                   help="int8 flavour besides the fp32 model (static: QDQ per-channel, calibrated; both: static and dynamic)")
    p.add_argument("--corpus", choices=CORPORA, default=None,
                   help="corpus of the bundle's training speakers: static calibration and the parity check use them")
    p.add_argument("--data", type=Path, default=None, help="its folder (CSV file for 'manifest')")
    p.add_argument("--cache", type=Path, default=Path("feature_cache"), help="feature cache folder")
    p.add_argument("--calibration-clips", type=positive_int, default=200, help="training clips for static calibration")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("robustness", help="a model on its own test speakers, clean and under degraded audio "
                       "(telephone, codecs, noise, babble, reverb)", formatter_class=fmt)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", type=Path, help=".onnx file written by `ser export` (scored by the torch-free runtime)")
    which.add_argument("--bundle", type=Path, help="bundle folder written by `ser ensemble` (PyTorch members)")
    which.add_argument("--runs", type=Path, help="a run folder, or a `ser compare` study (with --member; a --folds "
                       "study: every fold's run on that fold's test speakers)")
    p.add_argument("--member", default=None, help="the run's name in a study given to --runs (e.g. mel)")
    p.add_argument("--corpus", required=True, choices=CORPORA, help="corpus the model was trained on")
    p.add_argument("--data", required=True, type=Path, help="its folder (CSV file for 'manifest')")
    p.add_argument("--conditions", default="all", help="'all' or a comma list of ser.degrade presets; clean always first")
    p.add_argument("--out", type=Path, default=None, help="report folder (default: robustness/ beside the model)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="degradation, babble pool and bootstrap seed")
    p.add_argument("--boot", type=nonnegative_int, default=1000, help="bootstrap resamples (whole speakers); 0: no CIs")
    p.add_argument("--test-speakers", default=None,
                   help="comma list of speakers the model never saw, for a model that records no split")
    p.add_argument("--babble-clips", type=positive_int, default=50, help="training-speaker clips in the babble pool")
    p.add_argument("--jobs", type=positive_int, default=_default_jobs(), help="batches scored at once, a thread each")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="onnxruntime threads per batch (default: 1 with several jobs)")
    p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bar")
    p.set_defaults(func=_cmd_robustness)

    p = sub.add_parser("predict", help="emotion of audio files with an exported model (no torch); JSON per file",
                       formatter_class=fmt)
    p.add_argument("--model", required=True, type=Path, help=".onnx file written by `ser export`")
    p.add_argument("audio", nargs="+", type=Path, help="WAV/FLAC/OGG/MP3 files")
    p.add_argument("--timeline", action="store_true", help="per-window emotions for long recordings")
    p.add_argument("--window", type=positive_float, default=None, help="timeline window in seconds (default: clip length)")
    p.add_argument("--hop", type=positive_float, default=None, help="timeline hop in seconds (default: half the window)")
    p.add_argument("--threads", type=positive_int, default=None, help="onnxruntime threads (default: all cores)")
    p.add_argument("--max-seconds", type=positive_float, default=3600.0,
                   help="longest audio decoded (longer files are refused; memory stays bounded)")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("serve", help="HTTP service: POST audio to /predict, get the emotion (no torch)",
                       formatter_class=fmt)
    p.add_argument("--model", required=True, type=Path, help=".onnx file written by `ser export`")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    p.add_argument("--port", type=port, default=8000, help="TCP port")
    p.add_argument("--workers", type=positive_int, default=1, help="uvicorn worker processes")
    p.add_argument("--threads", type=positive_int, default=None, help="onnxruntime threads per worker (default: all cores)")
    p.add_argument("--max-mb", type=positive_float, default=20.0, help="largest upload accepted (MB)")
    p.add_argument("--max-seconds", type=positive_float, default=600.0, help="longest audio accepted (seconds)")
    p.add_argument("--min-seconds", type=positive_float, default=0.25, help="shortest audio accepted (seconds)")
    p.add_argument("--max-parts", type=positive_int, default=16, help="most parts in a multipart body")
    p.add_argument("--header-timeout", type=positive_float, default=10.0,
                   help="seconds for request headers to arrive (also an idle new connection)")
    p.add_argument("--body-timeout", type=positive_float, default=15.0,
                   help="seconds a request body may stall before it is refused")
    p.add_argument("--request-timeout", type=positive_float, default=120.0,
                   help="seconds the whole request body may take to arrive")
    p.add_argument("--keep-alive", type=positive_float, default=5.0, help="seconds an idle kept-alive connection stays")
    p.add_argument("--max-connections", type=positive_int, default=64,
                   help="connections at once; more are answered 503")
    p.add_argument("--allowed-hosts", default=None,
                   help="comma list of Host names served (example.com,*.example.com); default: any")
    p.add_argument("--cors-origins", default=None,
                   help="comma list of origins whose browser pages may call the API (https://app.example.com)")
    p.add_argument("--forwarded-allow-ips", default=None,
                   help="comma list of proxy addresses whose X-Forwarded-* headers are believed; default: none")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("client", help="send audio files to a running `ser serve` and print its answers",
                       formatter_class=fmt)
    p.add_argument("audio", nargs="+", type=Path, help="audio files")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="service base URL")
    p.add_argument("--timeline", action="store_true", help="ask for per-window results")
    p.add_argument("--timeout", type=positive_float, default=60.0, help="seconds to wait for each answer")
    p.set_defaults(func=_cmd_client)
    return parser


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


if __name__ == "__main__":
    sys.exit(main())
