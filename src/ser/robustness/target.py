"""What a robustness report scores: the model(s), and the clips of the model's own split.

Every model ``ser`` writes records the corpus-qualified speakers of the split it was
trained on (``"speakers": {"train", "val", "test"}``): a run in ``model.json``, a bundle in
``bundle.json``, an exported model in its ``ser`` metadata. The report scores the
recorded TEST speakers' clips of the corpus given, and draws the babble pool from the
recorded TRAINING speakers' clips. A model that records no split (hand-made, or exported
by a very old ``ser``) needs ``test_speakers`` (speakers it never saw; babble then comes
from every other speaker); given anyway, they must not be recorded training or
validation speakers (that would score a model on voices it learnt).

A target is one model and its split: one for an exported model, a bundle or a run, one
per fold for a ``ser compare --folds`` study (each fold's test speakers with that fold's
run of the member), scored one after another and pooled (every speaker tested once).

Example:
    >>> targets = resolve_targets(runs="study", member="mel")    # doctest: +SKIP
    >>> [t.name for t in targets]                                 # doctest: +SKIP
    ['fold0', 'fold1', 'fold2']
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..splits import speaker_keys
from .scorers import OnnxScorer, RobustnessError, TorchScorer


@dataclass(frozen=True)
class Target:
    """One model to score on its own split."""

    name: str | None  # fold name ("fold0" ...), None for a single split
    source: str  # what is scored, for the report (a file or folder)
    kind: str  # "onnx" or "pytorch"
    speakers: Mapping[str, Sequence[str]] | None  # the recorded split, None when the model records none
    load: Callable[[], Any]  # loads the scorer (heavy: called when its turn comes)
    predictions: Path | None = None  # a run's predictions.csv (its clean test probabilities, for a parity check)


def _onnx_target(path: Path, threads: int | None) -> Target:
    from ..runtime import EmotionModel, read_metadata

    meta = read_metadata(path)  # a missing or malformed file fails here, before the corpus is read
    return Target(None, str(path), "onnx", meta.get("speakers"), lambda: OnnxScorer(EmotionModel(path, threads)))


def _bundle_target(path: Path, encoder_paths: Mapping[str, str | Path] | None = None) -> Target:
    from ..ensemble import BundleError, load_bundle

    js = path if path.suffix == ".json" else path / "bundle.json"
    try:
        speakers = json.loads(js.read_text()).get("speakers")
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise BundleError(f"{js}: no readable bundle manifest ({e}); make a bundle with `ser ensemble --out DIR` "
                          "(DIR/bundle)") from e
    return Target(None, str(path), "pytorch", speakers,
                  lambda: TorchScorer(*load_bundle(path, encoder_paths=encoder_paths)))


def _run_target(run_dir: Path, name: str | None, encoder_paths: Mapping[str, str | Path] | None = None) -> Target:
    meta_file = run_dir / "model.json"
    if not meta_file.is_file():
        raise RobustnessError(f"{run_dir}: no model.json; a run folder is written by `ser train`/`ser compare`")
    if not (run_dir / "model.pt").is_file():
        raise RobustnessError(f"{run_dir} has no model.pt (a baseline run?): nothing to run on degraded audio")
    speakers = json.loads(meta_file.read_text()).get("speakers")
    pred = run_dir / "predictions.csv"
    return Target(name, str(run_dir), "pytorch", speakers, lambda: TorchScorer.from_run(run_dir, encoder_paths),
                  pred if pred.is_file() else None)


def _pick_member(base: Path, member: str | None, where: str) -> Path:
    trained = sorted(d.name for d in base.iterdir() if (d / "model.pt").is_file() and (d / "model.json").is_file())
    if member is None:
        if len(trained) == 1:
            return base / trained[0]
        raise RobustnessError(f"{where} holds {len(trained)} trained runs; name one with --member "
                              f"({', '.join(trained) or 'none found'})")
    if member not in trained:
        raise RobustnessError(f"{where}: no trained run {member!r}; runs with a checkpoint: {', '.join(trained)}")
    return base / member


def resolve_targets(model: str | Path | None = None, bundle: str | Path | None = None,
                    runs: str | Path | None = None, member: str | None = None,
                    threads: int | None = None,
                    encoder_paths: Mapping[str, str | Path] | None = None) -> list[Target]:
    """The models to score, cheaply (metadata only; each :attr:`Target.load` loads one).

    Args:
        model: an exported ``.onnx`` file. bundle: a bundle folder (``ser ensemble``).
        runs: a run folder, a single-split study (with ``member``) or a ``--folds`` study
            (with ``member``: every fold's run of that name). Exactly one of the three.
        member: the run's name in a study (may be left out when the study has one).
        threads: onnxruntime threads for an exported model.
        encoder_paths: ``{encoder name: weights path}`` for encoder members of a bundle or
            run (an exported model carries its encoder in the graph).
    """
    from ..ensemble import fold_dirs, is_fold_study

    given = [x for x in (model, bundle, runs) if x is not None]
    if len(given) != 1:
        raise RobustnessError("give exactly one of --model FILE.onnx, --bundle DIR or --runs DIR")
    if model is not None:
        return [_onnx_target(Path(model), threads)]
    if bundle is not None:
        return [_bundle_target(Path(bundle), encoder_paths)]
    root = Path(runs)
    if not root.is_dir():
        raise RobustnessError(f"{root}: no such folder; pass a run folder or a `ser compare` study")
    if (root / "model.json").is_file():
        return [_run_target(root, None, encoder_paths)]
    if is_fold_study(root):
        folds = fold_dirs(root)
        name = _pick_member(folds[0] / "runs", member, str(root)).name
        return [_run_target(_pick_member(f / "runs", name, str(f)), f.name, encoder_paths) for f in folds]
    base = root / "runs" if (root / "runs").is_dir() else root
    return [_run_target(_pick_member(base, member, str(root)), None, encoder_paths)]


def parse_speakers(text: str | Sequence[str] | None) -> list[str] | None:
    """``"01,02"`` or a list -> speaker ids (bare or corpus-qualified), None for none.

    >>> parse_speakers("ravdess/01, ravdess/02")
    ['ravdess/01', 'ravdess/02']
    """
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else list(text)
    out = list(dict.fromkeys(str(s).strip() for s in items if str(s).strip()))
    return out or None


def _match(manifest: pd.DataFrame, ids: Sequence[str]) -> np.ndarray:
    """Rows whose speaker is one of ``ids`` (qualified ids match ``corpus/speaker``, bare ones the speaker)."""
    keys, bare = speaker_keys(manifest), manifest["speaker"].astype(str)
    qualified = {s for s in ids if "/" in s}
    return (keys.isin(qualified) | bare.isin(set(ids) - qualified)).to_numpy()


def split_rows(manifest: pd.DataFrame, target: Target, test_speakers: Sequence[str] | None = None,
               corpus: str = "the corpus") -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(test rows, training rows)`` of ``manifest`` for ``target`` (see the module doc).

    Raises:
        RobustnessError: no split recorded and no ``test_speakers``; given test speakers
            that the model trained or validated on, or that the corpus lacks; no test clip.
    """
    rec = target.speakers or {}
    recorded = bool(rec.get("test"))
    if test_speakers:
        unknown = [s for s in test_speakers if not _match(manifest, [s]).any()]
        if unknown:
            raise RobustnessError(f"--test-speakers {unknown} are not speakers of {corpus} (e.g. "
                                  f"{', '.join(speaker_keys(manifest).drop_duplicates()[:4])})")
        heard = _match(manifest, [*rec.get("train", []), *rec.get("val", [])])
        seen = [s for s in test_speakers if (_match(manifest, [s]) & heard).any()]
        if seen:
            raise RobustnessError(f"--test-speakers {seen}: {target.source} trained or validated on them; "
                                  "score speakers it never heard (leave the option out to use its own test speakers)")
        test = _match(manifest, test_speakers)
        train = _match(manifest, rec["train"]) if rec.get("train") else ~test
    elif recorded:
        test, train = _match(manifest, rec["test"]), _match(manifest, rec.get("train", []))
    else:
        raise RobustnessError(f"{target.source} records no test speakers (no 'speakers' in its metadata); pass "
                              "--test-speakers S1,S2 (speakers it never saw; babble comes from the other speakers)")
    if not test.any():
        shown = list(test_speakers or rec["test"])[:5]
        raise RobustnessError(f"no clip of {corpus} belongs to the test speakers {shown} of {target.source}; "
                              "is this the corpus (and folder) the model was trained on?")
    return manifest[test].reset_index(drop=True), manifest[train & ~test].reset_index(drop=True)


def babble_rows(train: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """At most ``n`` training clips for babble, drawn by ``seed`` from the rows sorted by path
    (so the pool does not depend on the manifest's order).

    >>> df = pd.DataFrame({"path": [f"{i}.wav" for i in range(10)]})
    >>> babble_rows(df, 3, 0).equals(babble_rows(df.iloc[::-1], 3, 0))
    True
    """
    rows = train.sort_values("path", kind="stable").reset_index(drop=True)
    if len(rows) <= n:
        return rows
    pick = np.sort(np.random.default_rng(seed).choice(len(rows), size=n, replace=False))
    return rows.iloc[pick].reset_index(drop=True)
