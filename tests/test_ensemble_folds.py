"""The ensemble of a k-fold study: per-fold fitting on validation only, pooled test, CLI."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ser.ensemble import EnsembleError, fit_ensemble, fold_dirs, is_fold_study, load_fold_runs

LABELS = ["neutral", "happy", "sad", "angry"]
QUALITY = {"strong": 2.0, "medium": 1.2, "weak": 0.4}  # true-class logit boost of each fake run


def fold_clips(fold: int, split: str, n: int = 24) -> pd.DataFrame:
    """Clips of two speakers per fold and split; fold i tests what fold i+1 validates."""
    group = fold if split == "test" else (fold + 1) % 3
    return pd.DataFrame({"split": split, "path": [f"/c/g{group}/{i:03d}.wav" for i in range(n)],
                         "speaker": [f"s{group}{i % 2}" for i in range(n)],
                         "emotion": [LABELS[i % len(LABELS)] for i in range(n)]})


def write_fold_run(study, fold, name, quality, seed):
    d = study / f"fold{fold}" / "runs" / name
    d.mkdir(parents=True)
    parts = []
    for k, split in enumerate(("val", "test")):
        df = fold_clips(fold, split)
        rng = np.random.default_rng([seed, fold, k])
        z = rng.normal(size=(len(df), len(LABELS)))
        z[np.arange(len(df)), df["emotion"].map(LABELS.index).to_numpy()] += quality
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        parts.append(pd.concat([df, pd.DataFrame(p, columns=[f"p_{x}" for x in LABELS])], axis=1))
    pd.concat(parts).to_csv(d / "predictions.csv", index=False)
    (d / "model.json").write_text(json.dumps({"labels": LABELS, "feature": name, "speakers": {"fold": fold}}))


@pytest.fixture
def study(tmp_path):
    root = tmp_path / "study"
    for fold in range(3):
        for seed, (name, q) in enumerate(QUALITY.items()):
            write_fold_run(root, fold, name, q, seed)
    return root


def test_fold_study_detection(study, tmp_path):
    assert is_fold_study(study) and [d.name for d in fold_dirs(study)] == ["fold0", "fold1", "fold2"]
    assert not is_fold_study(tmp_path)
    with pytest.raises(EnsembleError, match="not a k-fold study"):
        load_fold_runs(tmp_path)


def test_pooled_test_covers_every_speaker_once_and_weights_are_per_fold(study, tmp_path):
    s = fit_ensemble(study, tmp_path / "ens", top=2, trials=8, n_boot=20, progress=False)
    assert s["members"] == ["strong", "medium"] and s["best_single"] == "strong"  # by mean validation UAR
    assert s["n_test"] == 3 * 24 and s["test_speakers"] == sorted(f"s{g}{i}" for g in range(3) for i in range(2))
    for f in s["per_fold"]:
        w = np.array([f["w_strong"], f["w_medium"]])
        assert (w >= 0).all() and w.sum() == pytest.approx(1.0) and f["temperature"] > 0
    pred = pd.read_csv(tmp_path / "ens" / "predictions.csv", dtype={"speaker": str})
    test = pred[pred.split == "test"]
    assert len(test) == 72 and test.path.is_unique and sorted(test.fold.unique()) == [0, 1, 2]
    assert np.allclose(test.filter(like="p_").sum(axis=1), 1.0)
    r = s["results"]
    assert set(r) == {"weighted", "equal", "best_single", "stacking"}
    assert r["weighted"]["test"]["n"] == 72 and "ci" in r["weighted"]["test"]
    md = (tmp_path / "ens" / "ensemble.md").read_text()
    assert "over 3 speaker folds" in md and md.count("\n| 2 | ") == 1 and "| strong | " in md
    for f in ("folds.csv", "errors.csv", "speakers.csv", "confusion.png", "reliability.png", "summary.json"):
        assert (tmp_path / "ens" / f).stat().st_size > 0, f
    assert not (tmp_path / "ens" / "bundle").exists()


def test_fold_fits_never_read_test_data(study, tmp_path):
    """Make the weak member perfect on every test fold: weights and temperatures stay put."""
    clean = fit_ensemble(study, tmp_path / "a", features="strong,weak", trials=8, n_boot=0, progress=False)
    for fold in range(3):
        f = study / f"fold{fold}" / "runs" / "weak" / "predictions.csv"
        df = pd.read_csv(f)
        te = (df.split == "test").to_numpy()
        cols = [f"p_{x}" for x in LABELS]
        df.loc[te, cols] = (np.array(LABELS)[None] == df.loc[te, "emotion"].to_numpy()[:, None]).astype(float)
        df.to_csv(f, index=False)
    poisoned = fit_ensemble(study, tmp_path / "b", features="strong,weak", trials=8, n_boot=0, progress=False)
    keep = ("w_strong", "w_weak", "temperature", "val_uar")
    assert [{k: f[k] for k in keep} for f in clean["per_fold"]] == [{k: f[k] for k in keep} for f in poisoned["per_fold"]]
    assert poisoned["results"]["weighted"]["test"]["uar"] != clean["results"]["weighted"]["test"]["uar"]


def test_members_must_exist_in_every_fold(study, tmp_path):
    import shutil

    shutil.rmtree(study / "fold1" / "runs" / "medium")
    with pytest.raises(EnsembleError, match=r"not in every fold"):
        fit_ensemble(study, tmp_path / "x", features="strong,medium", progress=False)
    s = fit_ensemble(study, tmp_path / "y", top=3, trials=4, n_boot=0, progress=False)
    assert s["members"] == ["strong", "weak"]


def test_cli_ensemble_on_a_fold_study(study, tmp_path, capsys):
    from ser.cli import main

    assert main(["-q", "ensemble", "--runs", str(study), "--top", "2", "--trials", "4", "--n-boot", "10",
                 "--no-tracking", "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "| weighted (Optuna, T per fold)" in out and "no bundle" in out
    assert json.loads((tmp_path / "cli" / "summary.json").read_text())["folds"] == 3


def test_cli_objective_reaches_every_fold_and_keeps_its_own_studies(study, tmp_path):
    import optuna

    from ser.cli import main

    out = tmp_path / "cli"
    for objective in ("uar", "log_loss"):  # same output folder: two sets of studies, none continued
        assert main(["-q", "ensemble", "--runs", str(study), "--top", "2", "--trials", "4", "--n-boot", "0",
                     "--objective", objective, "--out", str(out)]) == 0
        s = json.loads((out / "summary.json").read_text())
        assert s["objective"] == objective
        if objective == "log_loss":  # per fold, the pick has the lowest validation log loss of its study
            for f in range(3):
                st = optuna.load_study(study_name=next(n for n in optuna.get_all_study_names(
                    f"sqlite:///{out / 'optuna.db'}") if n.startswith(f"fold{f}-") and n.endswith("-log_loss")),
                    storage=f"sqlite:///{out / 'optuna.db'}")
                best = min(st.trials, key=lambda t: t.user_attrs["log_loss"])
                chosen = [s["per_fold"][f][f"w_{n}"] for n in s["members"]]
                assert len(st.trials) == 4 and chosen == pytest.approx(best.user_attrs["weights"])
    names = optuna.get_all_study_names(f"sqlite:///{out / 'optuna.db'}")
    assert len(names) == 6 and sum(n.endswith("-log_loss") for n in names) == 3


def test_two_studies_of_the_same_folds_pool_their_runs(study, tmp_path):
    """Members trained in two studies (say a GPU and a CPU session) form one fold ensemble."""
    import shutil

    from ser.cli import main

    other = tmp_path / "other"
    for fold in range(3):
        shutil.move(study / f"fold{fold}" / "runs" / "weak", other / f"fold{fold}" / "runs" / "weak")
        write_fold_run(other, fold, "strong", 0.0, 99)  # a clash: the first study's strong is kept
    one = fit_ensemble(study, tmp_path / "one", features="strong,medium", trials=4, n_boot=0, progress=False)
    both = fit_ensemble([study, other], tmp_path / "both", features="strong,medium,weak", trials=4, n_boot=0,
                          progress=False)
    assert both["members"] == ["strong", "medium", "weak"] and both["study_dir"] == f"{study}+{other}"
    assert both["members_pooled"]["strong"] == one["members_pooled"]["strong"]  # the first study's run
    assert main(["-q", "ensemble", "--runs", str(study), str(other), "--features", "strong,weak", "--trials", "2",
                 "--n-boot", "0", "--out", str(tmp_path / "cli")]) == 0
    assert json.loads((tmp_path / "cli" / "summary.json").read_text())["members"] == ["strong", "weak"]
    # different fold counts, or runs of other clips, are refused
    shutil.rmtree(other / "fold2")
    with pytest.raises(EnsembleError, match="different numbers of folds"):
        fit_ensemble([study, other], tmp_path / "x", progress=False)
    shutil.rmtree(other)
    for fold in range(3):
        write_fold_run(other, fold, "shifted", 1.0, 5)
        df = pd.read_csv(other / f"fold{fold}" / "runs" / "shifted" / "predictions.csv")
        df.assign(path=df["path"].str.replace("/c/", "/d/")).to_csv(
            other / f"fold{fold}" / "runs" / "shifted" / "predictions.csv", index=False)
    with pytest.raises(EnsembleError, match="disagree on the val clips"):
        fit_ensemble([study, other], tmp_path / "y", features="strong,shifted", progress=False)
