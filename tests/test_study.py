"""The comparison study end to end on a tiny synthetic corpus."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from ser.audio import ClipConfig
from ser.augment import AugmentConfig
from ser.study import BASELINE, run_study
from ser.corpora import generate_synthetic, load_manifest
from ser.train import TrainConfig

CFG = TrainConfig(epochs=2, patience=2, clip=ClipConfig(seconds=1.0), augment=AugmentConfig(enabled=False),
                  n_boot=20)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = generate_synthetic(tmp_path_factory.mktemp("syn") / "c", speakers=6, per_emotion=2, progress=False)
    return load_manifest("synthetic", root)


@pytest.mark.slow
def test_compare_single_split(manifest, tmp_path):
    board = run_study(manifest, "rms,chroma", CFG, tmp_path / "study", val=0.2, test=0.2,
                    cache_dir=tmp_path / "fc", tracking=False, progress=False)
    assert set(board.feature) == {"rms", "chroma", BASELINE}
    assert board.test_uar.is_monotonic_decreasing
    assert ((board.test_uar_lo <= board.test_uar + 1e-9) & (board.test_uar <= board.test_uar_hi + 1e-9)).all()
    out = tmp_path / "study"
    for f in ("leaderboard.csv", "leaderboard.md", "leaderboard.png", "confusions.png", "split.csv", "study.json"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    assert (out / "runs" / "rms" / "model.pt").is_file() and (out / "runs" / "chroma" / "predictions.csv").is_file()
    assert "| 1 |" in (out / "leaderboard.md").read_text()
    assert json.loads((out / "study.json").read_text())["features"] == ["rms", "chroma"]
    # the baseline is saved as a run without a checkpoint: a bundled ensemble passes over it
    base = out / "runs" / BASELINE
    assert (base / "predictions.csv").is_file() and not (base / "model.pt").exists()
    assert json.loads((base / "model.json").read_text())["kind"] == "baseline"
    from ser.ensemble import EnsembleError, fit_ensemble

    s = fit_ensemble(out, tmp_path / "ens", top=3, trials=4, tracking=False, progress=False, n_boot=0)
    assert sorted(s["weights"]) == ["chroma", "rms"]
    with pytest.raises(EnsembleError, match="is a baseline run; the bundle needs every member's checkpoint"):
        fit_ensemble(out, tmp_path / "ens2", features=f"rms,{BASELINE}", trials=4, tracking=False, progress=False)


@pytest.mark.slow
def test_compare_folds_test_every_speaker(manifest, tmp_path):
    board = run_study(manifest, ["zcr"], CFG, tmp_path / "study", folds=3, cache_dir=tmp_path / "fc",
                    tracking=False, progress=False)
    assert list(board.feature) == ["zcr", BASELINE] or list(board.feature) == [BASELINE, "zcr"]
    assert (board.n_test == len(manifest)).all()  # pooled over folds: every clip tested once
    split = pd.read_csv(tmp_path / "study" / "split.csv")
    assert split.fold.nunique() == 3
    assert all((tmp_path / "study" / f"fold{i}" / "runs" / "zcr" / "model.pt").is_file() for i in range(3))
    # each fold's baseline is a run a fold ensemble can take; pooled, it is the leaderboard's row
    from ser.ensemble import fit_ensemble

    s = fit_ensemble(tmp_path / "study", tmp_path / "ens", features=f"zcr,{BASELINE}", trials=4, n_boot=0,
                     progress=False)
    assert s["members"] == ["zcr", BASELINE]
    assert s["members_pooled"][BASELINE]["test"]["uar"] == pytest.approx(
        float(board.set_index("feature").test_uar[BASELINE]), abs=1e-9)


@pytest.mark.slow
def test_compare_parallel_matches_sequential(manifest, tmp_path):
    import numpy as np

    kw = dict(folds=3, cache_dir=tmp_path / "fc", tracking=False, progress=False, baseline=False)
    seq = run_study(manifest, "rms,zcr", CFG, tmp_path / "seq", **kw)
    par = run_study(manifest, "rms,zcr", CFG, tmp_path / "par", parallel=2, **kw)
    assert set(seq.feature) == set(par.feature) == {"rms", "zcr"}
    for fold in ("fold0", "fold1", "fold2"):
        for name in ("rms", "zcr"):
            a = pd.read_csv(tmp_path / "seq" / fold / "runs" / name / "predictions.csv")
            b = pd.read_csv(tmp_path / "par" / fold / "runs" / name / "predictions.csv")
            assert list(a.path) == list(b.path)
            p = [c for c in a.columns if c.startswith("p_")]
            np.testing.assert_allclose(a[p].to_numpy(), b[p].to_numpy(), atol=1e-3)
    # the fold ensemble reports each member pooled exactly as the study's leaderboard does
    from ser.ensemble import fit_ensemble

    s = fit_ensemble(tmp_path / "seq", tmp_path / "ens", features="rms,zcr", trials=4, n_boot=0, progress=False)
    for name in ("rms", "zcr"):
        pooled = s["members_pooled"][name]
        assert pooled["test"]["n"] == len(manifest) and len(pooled["test_uar_per_fold"]) == 3
        assert pooled["test"]["uar"] == pytest.approx(float(seq.set_index("feature").test_uar[name]), abs=1e-9)


@pytest.mark.slow
def test_compare_parallel_with_tracking_on_a_fresh_store(manifest, tmp_path, monkeypatch):
    """Workers must not race to create the MLflow schema (SQLite 'duplicate column')."""
    monkeypatch.chdir(tmp_path)
    # empty = the default store under ./mlruns; and monkeypatch undoes what mlflow writes there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    run_study(manifest, "rms,zcr", CFG, tmp_path / "study", val=0.2, test=0.2, cache_dir=tmp_path / "fc",
            tracking=True, progress=False, baseline=False, parallel=2)
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["ser"])
    assert sorted(runs["params.feature"]) == ["rms", "zcr"] and "metrics.test_uar" in runs
