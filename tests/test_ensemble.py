"""The ensemble: member choice, alignment, weight search on validation only, calibration,
error analysis, the bundle and the CLI (fake runs for the logic, one tiny study for the rest)."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from ser.ensemble import (BundleError, EnsembleError, align_runs, apply_temperature, bundle_features, combine,
                          error_table, expected_calibration_error, fit_ensemble, fit_temperature, load_bundle,
                          load_runs, predict_bundle, search_weights, select_members, simplex_weights, speaker_table)

LABELS = ["neutral", "happy", "sad", "angry"]


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def clips(split: str, n: int = 24) -> pd.DataFrame:
    return pd.DataFrame({"split": split, "path": [f"/c/{split}/{i:03d}.wav" for i in range(n)],
                         "speaker": [f"{split}{i % 3}" for i in range(n)],
                         "emotion": [LABELS[i % len(LABELS)] for i in range(n)]})


def probs_for(df: pd.DataFrame, quality: float, seed: int, labels=LABELS) -> np.ndarray:
    """Noisy probabilities whose true-class boost is ``quality`` (0 = chance)."""
    rng = np.random.default_rng(seed)
    y = df["emotion"].map({e: i for i, e in enumerate(labels)}).to_numpy()
    z = rng.normal(size=(len(df), len(labels)))
    z[np.arange(len(df)), y] += quality
    return softmax(z)


def chosen_runs(runs, top=3, features=None):
    """The chosen members' runs (select_members names them)."""
    return [runs[n] for n in select_members(runs, top, features)]


def write_run(root, name, val_q, test_q, seed=0, labels=LABELS, val=None, test=None, speakers=None):
    d = root / "runs" / name
    d.mkdir(parents=True)
    parts = []
    for df, q, s in ((clips("val") if val is None else val, val_q, seed),
                     (clips("test") if test is None else test, test_q, seed + 1)):
        p = probs_for(df, q, s, labels)
        parts.append(pd.concat([df.reset_index(drop=True), pd.DataFrame(p, columns=[f"p_{x}" for x in labels])], axis=1))
    pd.concat(parts).to_csv(d / "predictions.csv", index=False)
    spk = speakers or {"train": ["train0"], "val": ["val0", "val1", "val2"], "test": ["test0", "test1", "test2"]}
    (d / "model.json").write_text(json.dumps({"labels": labels, "feature": name, "speakers": spk}))
    return d


# ---------------------------------------------------------------- members and alignment

def test_top_k_by_validation_uar_not_test(tmp_path):
    write_run(tmp_path, "a", val_q=4.0, test_q=0.0, seed=1)
    write_run(tmp_path, "b", val_q=0.0, test_q=6.0, seed=2)  # best on test, worst on validation
    write_run(tmp_path, "c", val_q=2.5, test_q=0.0, seed=3)
    runs = load_runs(tmp_path)
    assert runs["a"]["val_uar"] > runs["c"]["val_uar"] > runs["b"]["val_uar"]
    assert [r["name"] for r in chosen_runs(runs, top=2)] == ["a", "c"]
    assert [r["name"] for r in chosen_runs(runs, features="b,a")] == ["b", "a"]
    with pytest.raises(EnsembleError, match="available: a, b, c"):
        chosen_runs(runs, features=["a", "mel"])
    with pytest.raises(EnsembleError, match="at least 2"):
        chosen_runs(runs, top=1)


def test_runs_of_several_studies_are_merged_first_wins(tmp_path):
    write_run(tmp_path / "gpu", "a", 2.0, 2.0, seed=1)
    write_run(tmp_path / "gpu", "b", 1.0, 1.0, seed=2)
    write_run(tmp_path / "cpu", "b", 3.0, 3.0, seed=3)  # same name: the first study's is kept
    write_run(tmp_path / "cpu", "c", 1.5, 1.5, seed=4)
    runs = load_runs([tmp_path / "gpu", tmp_path / "cpu"])
    assert sorted(runs) == ["a", "b", "c"] and runs["b"]["dir"] == tmp_path / "gpu" / "runs" / "b"
    assert [r["name"] for r in chosen_runs(runs, features="a,c")] == ["a", "c"]
    write_run(tmp_path / "other", "d", 2.0, 2.0, speakers={"train": ["x"], "val": ["y"], "test": ["z"]})
    with pytest.raises(EnsembleError, match="different speaker splits"):
        align_runs(chosen_runs(load_runs([tmp_path / "gpu", tmp_path / "other"]), features="a,d"))
    with pytest.raises(EnsembleError, match="no study folders"):
        load_runs([])


def test_mismatched_labels_are_refused(tmp_path):
    write_run(tmp_path, "a", 2.0, 2.0)
    write_run(tmp_path, "b", 2.0, 2.0, labels=LABELS[::-1])
    with pytest.raises(EnsembleError, match="different labels"):
        align_runs(chosen_runs(load_runs(tmp_path), top=2))


def test_mismatched_clips_and_splits_are_refused(tmp_path):
    write_run(tmp_path / "p", "a", 2.0, 2.0)
    other = clips("test")
    other.loc[5, "path"] = "/elsewhere/x.wav"
    write_run(tmp_path / "p", "b", 2.0, 2.0, test=other)
    with pytest.raises(EnsembleError, match="disagree on the test clips.*1 only in a, 1 only in b"):
        align_runs(chosen_runs(load_runs(tmp_path / "p"), top=2))
    write_run(tmp_path / "s", "a", 2.0, 2.0)
    write_run(tmp_path / "s", "b", 2.0, 2.0, speakers={"train": ["x"], "val": ["y"], "test": ["z"]})
    with pytest.raises(EnsembleError, match="different speaker splits"):
        align_runs(chosen_runs(load_runs(tmp_path / "s"), top=2))


def test_reordered_clips_are_aligned_by_path(tmp_path):
    write_run(tmp_path, "a", 2.0, 2.0, seed=1)
    shuffled = clips("val").sample(frac=1.0, random_state=0)
    write_run(tmp_path, "b", 2.0, 2.0, seed=2, val=shuffled)
    runs = load_runs(tmp_path)
    data = align_runs([runs["a"], runs["b"]])
    b = runs["b"]["val"].set_index("path")
    expected = b.loc[data["val"]["paths"], [f"p_{x}" for x in LABELS]].to_numpy()
    assert data["val"]["paths"] == clips("val")["path"].tolist()
    np.testing.assert_allclose(data["val"]["probs"][1], expected)
    assert data["val"]["probs"].shape == (2, 24, 4)


def test_speakers_are_grouped_corpus_qualified(tmp_path):
    """Speaker "0" of two corpora is two people: bootstrap groups, stacking folds and the
    speaker table use corpus/speaker; predictions.csv keeps the run's own columns."""
    parts = {}
    for split in ("val", "test"):
        df = clips(split)
        parts[split] = df.assign(corpus=np.where(np.arange(len(df)) % 2, "emodb", "ravdess"), speaker="0")
    for name, seed in (("a", 1), ("b", 2)):
        write_run(tmp_path, name, 2.0, 2.0, seed=seed, val=parts["val"], test=parts["test"])
    data = align_runs(chosen_runs(load_runs(tmp_path), top=2))
    assert sorted(set(data["test"]["speakers"])) == ["emodb/0", "ravdess/0"]
    assert list(data["test"]["clips"].columns) == ["path", "corpus", "speaker", "emotion"]
    assert set(data["test"]["clips"]["speaker"]) == {"0"}
    from ser.ensemble import fit_folds

    summary, pooled, _ = fit_folds([(None, load_runs(tmp_path))], ["a", "b"], tmp_path / "ens", trials=2, n_boot=5)
    assert summary["test_speakers"] == ["emodb/0", "ravdess/0"] and summary["per_fold"][0]["val_speakers"] == \
        "emodb/0 ravdess/0"
    test = pooled["test"]
    assert len(speaker_table(test["weighted"], test["y"], LABELS, test["speakers"])) == 2


def test_runs_folder_errors(tmp_path):
    with pytest.raises(EnsembleError, match="no such folder"):
        load_runs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EnsembleError, match="no runs found"):
        load_runs(tmp_path / "empty")
    write_run(tmp_path / "folds" / "fold0", "a", 1.0, 1.0)
    with pytest.raises(EnsembleError, match="1-fold study.*fit_ensemble"):
        load_runs(tmp_path / "folds")
    with pytest.raises(EnsembleError, match="is one run"):
        load_runs(write_run(tmp_path / "one", "a", 1.0, 1.0))


# ---------------------------------------------------------------------------- the search

def test_simplex_weights():
    rng = np.random.default_rng(0)
    for _ in range(50):
        w = simplex_weights(rng.uniform(1e-6, 1.0, size=3))
        assert np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(simplex_weights([1.0, 1.0]), [0.5, 0.5])
    assert not np.signbit(simplex_weights([0.5, 1.0])).any()


def complementary():
    """Member 0 knows classes 0-1, member 1 knows classes 2-3: together they beat both."""
    df = clips("val", 40)
    y = df["emotion"].map({e: i for i, e in enumerate(LABELS)}).to_numpy()
    rng = np.random.default_rng(0)
    members = []
    for known in ((0, 1), (2, 3)):
        z = rng.normal(scale=0.5, size=(len(y), 4))
        mask = np.isin(y, known)
        z[np.arange(len(y))[mask], y[mask]] += 3.0
        members.append(softmax(z))
    return np.stack(members), y


def test_search_weights_are_on_the_simplex_and_not_worse_than_members():
    from ser.evaluate import evaluate_predictions

    probs, y = complementary()
    res = search_weights(probs, y, LABELS, trials=12, seed=0)
    assert res["n_trials"] == 12 and len(res["trials"]) == 12
    for tr in res["trials"]:
        assert np.all(np.asarray(tr["weights"]) >= 0) and sum(tr["weights"]) == pytest.approx(1.0)
    singles = [evaluate_predictions(p, y, LABELS, n_boot=0)["uar"] for p in probs]
    assert res["val_uar"] >= max(singles) + 0.1  # the two halves combine
    assert res["weights"] == search_weights(probs, y, LABELS, trials=12, seed=0)["weights"]  # seeded


def test_log_loss_objective_picks_the_lowest_validation_log_loss():
    probs, y = complementary()
    res = search_weights(probs, y, LABELS, trials=12, seed=0, objective="log_loss")
    assert res["objective"] == "log_loss" and res["n_trials"] == 12
    losses = [t["val_log_loss"] for t in res["trials"]]
    assert res["val_log_loss"] == min(losses)
    # the UAR search's pick is scored differently: its log loss is no lower than this one
    uar = search_weights(probs, y, LABELS, trials=12, seed=0)
    assert uar["objective"] == "uar" and uar["val_log_loss"] >= res["val_log_loss"]
    assert uar["val_uar"] == max(t["val_uar"] for t in uar["trials"])
    with pytest.raises(EnsembleError, match="objective 'accuracy'"):
        search_weights(probs, y, LABELS, trials=2, objective="accuracy")


def test_resumed_study_continues_to_the_total(tmp_path):
    probs, y = complementary()
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = search_weights(probs, y, LABELS, trials=5, seed=0, storage=storage, study_name="s")
    second = search_weights(probs, y, LABELS, trials=10, seed=0, storage=storage, study_name="s")
    assert (first["n_trials"], second["n_trials"]) == (5, 10)  # `trials` is the study's total
    assert [t["weights"] for t in second["trials"][:5]] == [t["weights"] for t in first["trials"]]
    again = search_weights(probs, y, LABELS, trials=10, seed=0, storage=storage, study_name="s")
    assert again["n_trials"] == 10 and again["weights"] == second["weights"]


def test_a_study_from_before_the_objective_option_still_continues(tmp_path):
    """Older trials carry UAR only as their value (no "uar" attribute); a re-run resumes them."""
    import optuna

    from ser.evaluate import evaluate_predictions

    probs, y = complementary()
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    old = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for i in range(3):
        w = simplex_weights([0.5, 0.2 + 0.2 * i])
        res = evaluate_predictions(combine(probs, w), y, LABELS, n_boot=0)
        old.add_trial(optuna.trial.create_trial(
            params={"u0": 0.5, "u1": 0.2 + 0.2 * i}, value=res["uar"],
            distributions={f"u{j}": optuna.distributions.FloatDistribution(1e-6, 1.0) for j in range(2)},
            user_attrs={"weights": w.tolist(), "log_loss": res["log_loss"]}))
    before = [t.value for t in old.trials]
    res = search_weights(probs, y, LABELS, trials=6, seed=0, storage=storage, study_name="s")
    assert res["n_trials"] == 6 and [t["val_uar"] for t in res["trials"][:3]] == before


# ---------------------------------------------------------------- calibration and errors

def test_ece_of_known_cases():
    conf = np.array([[0.9, 0.1]] * 4)
    assert expected_calibration_error(conf, [0, 0, 1, 1]) == pytest.approx(0.4)
    assert expected_calibration_error(np.eye(3), [0, 1, 2]) == pytest.approx(0.0)


def test_temperature_scaling_fixes_an_overconfident_model():
    rng = np.random.default_rng(0)
    z = rng.normal(scale=1.5, size=(4000, 4))
    y = np.array([rng.choice(4, p=p) for p in softmax(z)])  # labels drawn from softmax(z): calibrated
    over = softmax(4.0 * z)  # the same ranking, four times too sharp
    t = fit_temperature(over[:2000], y[:2000])
    assert 3.0 < t < 5.5
    before = expected_calibration_error(over[2000:], y[2000:])
    after = expected_calibration_error(apply_temperature(over[2000:], t), y[2000:])
    assert before > 0.15 and after < 0.04
    np.testing.assert_array_equal(apply_temperature(over, t).argmax(1), over.argmax(1))
    assert 0.8 < fit_temperature(softmax(z[:2000]), y[:2000]) < 1.25


def test_error_and_speaker_tables():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.1, 0.4], [0.2, 0.3, 0.5]])
    y = np.array([0, 1, 2, 2])
    errors = error_table(p, y, ["a", "b", "c"], ["w", "x", "y", "z"], ["s1", "s1", "s2", "s2"])
    assert errors.to_dict("records")[0] == {
        "path": "y", "speaker": "s2", "true": "c", "predicted": "a", "p_true": 0.4, "top1": "a", "p_top1": 0.5,
        "top2": "c", "p_top2": 0.4, "top3": "b", "p_top3": 0.1}
    assert len(errors) == 1
    spk = speaker_table(p, y, ["a", "b", "c"], ["s1", "s1", "s2", "s2"])
    assert spk[["speaker", "n", "correct", "accuracy"]].values.tolist() == [["s2", 2, 1, 0.5], ["s1", 2, 2, 1.0]]


# ------------------------------------------------------------------ a tiny real study

# the `study` (rms, zcr, chroma on a tiny synthetic corpus) and `ens` fixtures live in conftest.py


@pytest.mark.slow
def test_ensemble_writes_report_bundle_and_summary(study, ens):
    out = study / "ens"
    for f in ("summary.json", "ensemble.md", "predictions.csv", "trials.csv", "errors.csv", "speakers.csv",
              "confusion.png", "reliability.png", "optuna.db", "bundle/bundle.json"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    w = np.array(list(ens["weights"].values()))
    assert np.all(w >= 0) and w.sum() == pytest.approx(1.0) and len(w) == 3
    assert set(ens["results"]) >= {"weighted", "equal", "best_single"} and ens["n_trials"] == 12
    runs = load_runs(study / "study")
    assert ens["results"]["best_single"]["member"] == sorted(runs, key=lambda n: (-runs[n]["val_uar"], n))[0]
    md = (out / "ensemble.md").read_text()
    assert "| weighted (Optuna" in md and "| equal weights |" in md and "| best single (" in md and "ECE before" in md
    bundle = json.loads((out / "bundle" / "bundle.json").read_text())
    assert bundle["weights"] == pytest.approx(list(w)) and bundle["temperature"] == pytest.approx(ens["temperature"])
    assert (bundle["sample_rate"], bundle["clip_seconds"], bundle["combiner"]) == (16000, 1.0, "weighted")
    assert {m["name"] for m in bundle["members"]} == {"rms", "zcr", "chroma"}
    assert all((out / "bundle" / m["checkpoint"]).is_file() for m in bundle["members"])
    assert set(bundle["speakers"]) == {"train", "val", "test"} and "test" in bundle["metrics"]
    test = pd.read_csv(out / "predictions.csv").query("split == 'test'")
    n_wrong = ens["results"]["weighted"]["test"]["n"] - round(ens["results"]["weighted"]["test"]["accuracy"]
                                                               * ens["results"]["weighted"]["test"]["n"])
    assert len(pd.read_csv(out / "errors.csv")) == n_wrong and len(test) == ens["results"]["weighted"]["test"]["n"]


@pytest.mark.slow
def test_bundle_round_trip_reproduces_the_test_probabilities(study, ens):
    models, meta = load_bundle(study / "ens" / "bundle")
    assert set(models) == {"rms", "zcr", "chroma"}
    stored = pd.read_csv(study / "ens" / "predictions.csv", dtype={"speaker": str}).query("split == 'test'")
    probs = predict_bundle((models, meta), bundle_features(meta, stored, cache_dir=study / "fc"))
    np.testing.assert_allclose(probs, stored[[f"p_{x}" for x in meta["labels"]]].to_numpy(), atol=1e-5)
    with pytest.raises(BundleError, match="no bundle manifest"):
        load_bundle(study)


@pytest.mark.slow
def test_search_never_reads_test_data(study, ens, tmp_path):
    """Poison the test probabilities (the weakest member made perfect on test, the others
    garbage): weights, temperature, trials and every validation score stay identical."""
    weakest = min(ens["weights"], key=lambda n: (ens["weights"][n], n))
    rng = np.random.default_rng(1)
    for d in sorted((study / "study" / "runs").iterdir()):
        new = tmp_path / "runs" / d.name
        new.mkdir(parents=True)
        os.link(d / "model.pt", new / "model.pt")
        shutil.copy(d / "model.json", new / "model.json")
        df = pd.read_csv(d / "predictions.csv", dtype={"speaker": str})
        cols = [c for c in df.columns if c.startswith("p_")]
        te = (df["split"] == "test").to_numpy()
        if d.name == weakest:
            truth = df.loc[te, "emotion"].to_numpy()[:, None]
            df.loc[te, cols] = (np.array([c[2:] for c in cols])[None] == truth).astype(float)
        else:
            df.loc[te, cols] = rng.dirichlet(np.ones(len(cols)) * 0.2, size=int(te.sum()))
        df.to_csv(new / "predictions.csv", index=False)
    poisoned = fit_ensemble(tmp_path, tmp_path / "ens", top=3, trials=12, seed=0, tracking=False, progress=False,
                        n_boot=20)
    assert poisoned["weights"] == ens["weights"] and poisoned["temperature"] == ens["temperature"]
    assert pd.read_csv(tmp_path / "ens" / "trials.csv").equals(pd.read_csv(study / "ens" / "trials.csv"))
    for k in ens["results"]:
        assert poisoned["results"][k]["val"] == ens["results"][k]["val"], k
    a = pd.read_csv(study / "ens" / "predictions.csv").query("split == 'test'").filter(like="p_").to_numpy()
    b = pd.read_csv(tmp_path / "ens" / "predictions.csv").query("split == 'test'").filter(like="p_").to_numpy()
    assert np.abs(a - b).max() > 0.05  # the test data did change


@pytest.mark.slow
def test_a_single_split_is_the_one_fold_case(study, ens, tmp_path, monkeypatch):
    """Single splits and fold studies are fitted and scored by one function, fit_folds: the
    single split's summary is its one-fold result, and a study whose two folds are copies of
    that split gives each fold exactly the single split's fit and scores."""
    from ser.ensemble import fit as fit_module
    from ser.ensemble import fit_folds

    one, _, fits = fit_folds([(None, load_runs(study / "study"))], ens["members"], tmp_path / "one", trials=12,
                             seed=0, n_boot=20)
    assert {k: ens[k] for k in one} == one and ens["folds"] == 1 and "bundle" in ens
    assert ens["weights"] == dict(zip(one["members"], fits[0]["weights"].tolist()))
    assert ens["temperature"] == one["per_fold"][0]["temperature"] == fits[0]["temperature"]

    calls = []
    real = fit_module.fit_folds
    monkeypatch.setattr(fit_module, "fit_folds",
                        lambda folds, *a, **k: calls.append(len(folds)) or real(folds, *a, **k))
    for i in range(2):
        shutil.copytree(study / "study" / "runs", tmp_path / "folds" / f"fold{i}" / "runs",
                        ignore=shutil.ignore_patterns("*.pt"))
    twice = fit_ensemble(tmp_path / "folds", tmp_path / "ens2", top=3, trials=12, seed=0, progress=False, n_boot=20)
    again = fit_ensemble(study / "study", tmp_path / "ens1", top=3, trials=12, seed=0, tracking=False,
                         progress=False, n_boot=20)
    assert calls == [2, 1] and again["results"] == ens["results"]
    assert twice["folds"] == 2 and "bundle" not in twice and not (tmp_path / "ens2" / "bundle").exists()
    for f in twice["per_fold"]:
        assert {**f, "fold": 0} == ens["per_fold"][0]
    for k, r in ens["results"].items():
        assert twice["results"][k]["test"]["uar"] == pytest.approx(r["test"]["uar"])


@pytest.mark.slow
def test_cli_ensemble(study, tmp_path, capsys):
    from ser.cli import main

    out = tmp_path / "cli"
    args = ["-q", "ensemble", "--runs", str(study / "study" / "runs"), "--features", "zcr,rms", "--trials", "4",
            "--n-boot", "10", "--no-tracking", "--out", str(out)]
    assert main(args) == 0
    assert "| weighted (Optuna" in capsys.readouterr().out
    assert list(json.loads((out / "summary.json").read_text())["weights"]) == ["zcr", "rms"]
    assert main(["-q", "ensemble", "--runs", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "ser: error:" in err and "no such folder" in err and "Traceback" not in err
