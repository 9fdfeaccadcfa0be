"""The ``ser`` command line's flags: every subcommand, its options, help texts and defaults.

:func:`make_parser` builds the parser and binds each subcommand to the function given for
it by name; it imports only the corpus names (no torch), so ``ser --help`` stays fast.

Example:
    >>> args = make_parser({name: print for name in COMMANDS}).parse_args(["serve", "--model", "m.onnx"])
    >>> args.host, args.port, args.func is print
    ('127.0.0.1', 8000, True)
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Mapping

from ..argtypes import (fraction, name_path, nonnegative_float, nonnegative_int, port, positive_float,
                        positive_int, probability)
from ..workers import cpu_cores

# the subcommands make_parser binds, as a user types them
COMMANDS = ("data synth", "data download", "data manifest", "features", "train", "compare", "layers", "sweep",
            "ensemble", "export", "robustness", "predict", "serve", "client")


def _add_encoder_paths(p: argparse.ArgumentParser) -> None:
    p.add_argument("--encoder-path", type=name_path, action="append", default=None, metavar="NAME=PATH",
                   help="weights of encoder NAME for its members (a CTranslate2 folder or .pt), where they are no "
                        "longer at the path recorded in training; repeat for each encoder; checked by SHA-256")


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


def make_parser(commands: Mapping[str, Callable[[argparse.Namespace], int]]) -> argparse.ArgumentParser:
    """The ``ser`` parser; ``commands[name]`` (a name of :data:`COMMANDS`) is what ``args.func`` runs."""
    from ..corpora import CORPORA, DOWNLOADERS

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
    p.set_defaults(func=commands["data synth"])

    p = dsub.add_parser("download", help="download a corpus from its official source", formatter_class=fmt)
    p.add_argument("corpus", choices=sorted(DOWNLOADERS), help="corpus name")
    p.add_argument("--out", required=True, type=Path, help="target folder")
    p.set_defaults(func=commands["data download"])

    p = dsub.add_parser("manifest", help="read a corpus and print files, speakers, emotions",
                        formatter_class=fmt)
    p.add_argument("corpus", choices=CORPORA, help="corpus layout (manifest: DIR is a CSV file)")
    p.add_argument("dir", type=Path, help="corpus folder (or CSV file for 'manifest')")
    p.add_argument("--out", type=Path, default=None, help="also write the manifest as CSV here")
    p.set_defaults(func=commands["data manifest"])

    p = sub.add_parser("features", help="extract and cache features for a whole corpus", formatter_class=fmt)
    p.add_argument("--corpus", required=True, choices=CORPORA, help="corpus layout")
    p.add_argument("--data", required=True, type=Path, help="corpus folder (CSV file for 'manifest')")
    p.add_argument("--features", default="all", help="'all' or a comma list, e.g. mel,mfcc")
    p.add_argument("--cache", type=Path, default=Path("feature_cache"), help="cache folder")
    p.add_argument("--jobs", type=positive_int, default=cpu_cores(), help="worker processes")
    p.add_argument("--seconds", type=positive_float, default=3.0, help="clip length after silence trimming")
    p.add_argument("--aug-copies", type=nonnegative_int, default=0,
                   help="also cache K waveform-augmented copies of every clip (training uses them)")
    p.add_argument("--aug-seed", type=nonnegative_int, default=0, help="seed of the augmentation chain (= training --seed)")
    p.set_defaults(func=commands["features"])

    def corpus_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--corpus", required=True, choices=CORPORA, help="corpus layout")
        p.add_argument("--data", required=True, type=Path, help="corpus folder (CSV file for 'manifest')")
        p.add_argument("--cache", type=Path, default=Path("feature_cache"), help="feature cache folder")
        p.add_argument("--jobs", type=positive_int, default=cpu_cores(), help="feature extraction processes")
        p.add_argument("--seconds", type=positive_float, default=3.0, help="clip length after silence trimming")

    p = sub.add_parser("train", help="train one member (ResNet18 or pooled head) on one representation",
                       formatter_class=fmt)
    corpus_flags(p)
    p.add_argument("--feature", required=True,
                   help="a feature (mel, mfcc, ...) or an encoder layer (whisper_base@5; a bare name: its default layer)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/FEATURE)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/resume.pt if present")
    _add_training_flags(p)
    p.set_defaults(func=commands["train"])

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
    p.set_defaults(func=commands["compare"])

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
    p.set_defaults(func=commands["layers"])

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
    p.set_defaults(func=commands["sweep"])

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
    p.set_defaults(func=commands["ensemble"])

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
    _add_encoder_paths(p)
    p.set_defaults(func=commands["export"])

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
    _add_encoder_paths(p)
    p.add_argument("--test-speakers", default=None,
                   help="comma list of speakers the model never saw, for a model that records no split")
    p.add_argument("--babble-clips", type=positive_int, default=50, help="training-speaker clips in the babble pool")
    p.add_argument("--jobs", type=positive_int, default=cpu_cores(), help="batches scored at once, a thread each")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="onnxruntime threads per batch (default: 1 with several jobs)")
    p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bar")
    p.set_defaults(func=commands["robustness"])

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
    p.set_defaults(func=commands["predict"])

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
    p.set_defaults(func=commands["serve"])

    p = sub.add_parser("client", help="send audio files to a running `ser serve` and print its answers",
                       formatter_class=fmt)
    p.add_argument("audio", nargs="+", type=Path, help="audio files")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="service base URL")
    p.add_argument("--timeline", action="store_true", help="ask for per-window results")
    p.add_argument("--timeout", type=positive_float, default=60.0, help="seconds to wait for each answer")
    p.set_defaults(func=commands["client"])
    return parser
