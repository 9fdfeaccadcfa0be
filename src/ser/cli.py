"""The ``ser`` command line: a thin shell over the package.

Each subcommand parses its flags and calls one public function; errors from bad input
are printed as one clear line (exit status 2), never as a traceback.
"""
from __future__ import annotations

import argparse
import logging
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
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from .audio import AudioError
    from .corpora import CorpusError
    from .corpora.download import DownloadError
    from .splits import SplitError

    return (AudioError, CorpusError, DownloadError, SplitError, FileNotFoundError, PermissionError)


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
