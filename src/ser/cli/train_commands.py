"""The data and training side of the ``ser`` command line: corpora, features, training, studies.

One function per subcommand, each calling one public function of the package; the heavy
imports are inside them, so ``ser --help`` loads no torch. :func:`train_config` turns the
shared training flags into a :class:`~ser.train.TrainConfig`, refusing bad values before
any data is read.

Example:
    >>> from ser.cli import build_parser
    >>> args = build_parser().parse_args(["train", "--corpus", "synthetic", "--data", "d", "--feature", "mel",
    ...                                   "--epochs", "5", "--condition-aug", "telephone"])
    >>> cfg = train_config(args, "mel")
    >>> cfg.epochs, cfg.augment.copies, cfg.augment.conditions
    (5, 4, ('telephone',))
"""
from __future__ import annotations

import argparse
from pathlib import Path


def cmd_data_synth(args: argparse.Namespace) -> int:
    """``ser data synth``: write the synthetic corpus and print its summary."""
    from ..corpora import generate_synthetic, load_manifest, summarize

    out = generate_synthetic(args.out, speakers=args.speakers, per_emotion=args.per_emotion,
                             seed=args.seed, progress=not args.quiet)
    print(f"synthetic corpus written to {out}")
    print(summarize(load_manifest("synthetic", out)))
    return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    """``ser data download``: fetch a corpus from its official source."""
    from ..corpora import download_corpus

    out = download_corpus(args.corpus, args.out, progress=not args.quiet)
    print(f"{args.corpus} downloaded to {out}; next: ser data manifest {args.corpus} {out}")
    return 0


def cmd_data_manifest(args: argparse.Namespace) -> int:
    """``ser data manifest``: print a corpus's files, speakers and emotions; optionally write the CSV."""
    from ..corpora import load_manifest, summarize, write_manifest

    manifest = load_manifest(args.corpus, args.dir)
    print(summarize(manifest))
    if args.out:
        print(f"manifest written to {write_manifest(manifest, args.out)}")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    """``ser features``: extract and cache representations for a whole corpus."""
    from ..audio import ClipConfig
    from ..corpora import load_manifest
    from ..features import resolve_names
    from ..cache import extract_corpus

    names = resolve_names(args.features)
    manifest = load_manifest(args.corpus, args.data)
    clip = ClipConfig(seconds=args.seconds)
    chain = None
    if args.aug_copies:
        from ..augment import AugmentConfig, waveform_augmentation

        chain = waveform_augmentation(AugmentConfig(seed=args.aug_seed)).to_dict()
    report = extract_corpus(manifest, names, clip=clip, cache_dir=args.cache, jobs=args.jobs,
                            progress=not args.quiet, augment=chain, copies=args.aug_copies)
    print(f"{report}  (cache: {args.cache})")
    return 0


def train_config(args: argparse.Namespace, feature: str = "mel"):
    """The :class:`~ser.train.TrainConfig` the training flags of ``ser train``/``compare`` describe."""
    from ..audio import ClipConfig
    from ..augment import AugmentConfig
    from ..train import TrainConfig

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
    from ..augment import AugmentError
    from ..augment.policy import check_conditions

    try:
        return check_conditions(text or ())
    except AugmentError as e:
        raise AugmentError(f"--condition-aug: {str(e).removeprefix('condition augmentation: ')}") from None


def _channel(text: str | None) -> str | None:
    from ..degrade import DegradeError
    from ..modelmeta import channel_spec

    try:
        return channel_spec(text) and text
    except DegradeError as e:
        raise DegradeError(f"--channel: {str(e).removeprefix('channel: ')}") from None


def cmd_train(args: argparse.Namespace) -> int:
    """``ser train``: one member on one representation, speaker-independent split."""
    from ..corpora import load_manifest
    from ..representations import resolve_representations
    from ..splits import speaker_split
    from ..train import train_feature

    (feature,) = resolve_representations([args.feature])  # checked before any data is read
    cfg = train_config(args, feature)
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


def cmd_compare(args: argparse.Namespace) -> int:
    """``ser compare``: the representation study and its leaderboard."""
    from ..study import run_study
    from ..corpora import load_manifest

    cfg = train_config(args)  # bad flag values fail before any data is read
    run_study(load_manifest(args.corpus, args.data), args.features, cfg, args.out, folds=args.folds, val=args.val,
              test=args.test, split_seed=args.split_seed, cache_dir=args.cache,
              tracking=not args.no_tracking, jobs=args.jobs, progress=not args.quiet, resume=args.resume,
              parallel=args.parallel)
    print((Path(args.out) / "leaderboard.md").read_text())
    print(f"leaderboard, plots and runs in {args.out}")
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    """``ser layers``: linear probe of every layer of a pretrained encoder."""
    from ..audio import ClipConfig
    from ..corpora import load_manifest
    from ..probe import probe_layers

    manifest = load_manifest(args.corpus, args.data)
    table = probe_layers(manifest, args.encoder, folds=args.folds, val=args.val, test=args.test,
                         split_seed=args.split_seed, clip=ClipConfig(seconds=args.seconds), cache_dir=args.cache,
                         out_dir=args.out, seed=args.seed, path=args.encoder_path, device=args.device,
                         batch_size=args.batch_size, progress=not args.quiet)
    print((Path(args.out) / "layers.md").read_text())
    print(f"chosen layer {int(table.loc[table['chosen'], 'layer'].iloc[0])} (best validation UAR); "
          f"table, plot and settings in {args.out}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """``ser sweep``: training recipes x representations x seeds, ranked by validation UAR."""
    import json

    from ..audio import ClipConfig
    from ..augment import AugmentConfig
    from ..corpora import load_manifest
    from ..splits import speaker_split
    from ..sweep import SweepError, check_grid, sweep
    from ..train import TrainConfig

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
