"""ser robustness: a model on its own test speakers under degraded audio (synthetic, tiny models)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ser.audio import ClipConfig, load_audio
from ser.cli import main
from ser.corpora import EMOTIONS, load_manifest
from ser.degrade import get_condition, parse_conditions
from ser.robustness import RobustnessError, clip_seed, resolve_targets, robustness_report, score_conditions
from ser.robustness.report import COLUMNS
from ser.runtime import load_model, read_metadata
from ser.splits import speaker_keys

pytestmark = pytest.mark.slow  # the trained tiny study of conftest (about 20 s, once per session)

FILES = ("robustness.csv", "robustness.md", "robustness.png", "recall_change.csv", "recall_change.md",
         "robustness.json")


def _report(study, out, **kw):
    kw = {"runs": study / "study", "member": "chroma", "conditions": "telephone,snr10", "n_boot": 30,
          "progress": False, **kw}
    return robustness_report(corpus="synthetic", data=study / "syn", out_dir=out, **kw)


def test_run_report_table_files_and_parity_with_cached_predictions(study, tmp_path):
    table = _report(study, tmp_path / "r", conditions="snr10,telephone,clean")
    assert list(table.columns) == COLUMNS
    assert table["condition"].tolist() == ["clean", "snr10", "telephone"]  # clean first, once, order kept
    test = pd.read_csv(study / "study" / "runs" / "chroma" / "predictions.csv", dtype={"speaker": str}).query(
        "split == 'test'")
    assert (table["n"] == len(test)).all()
    assert (table["lo"] <= table["uar"] + 1e-12).all() and (table["uar"] <= table["hi"] + 1e-12).all()
    assert table["delta_uar"].iloc[0] == 0.0
    np.testing.assert_allclose(table["delta_uar"], table["uar"] - table["uar"].iloc[0])
    assert table.loc[0, ["delta_lo", "delta_hi"]].tolist() == [0.0, 0.0]  # clean against itself
    assert (table["delta_lo"] <= table["delta_hi"]).all() and table["delta_lo"].notna().all()
    assert table["no_speech_fraction"].between(0, 1).all()
    for name in FILES:
        assert (tmp_path / "r" / name).stat().st_size > 0, name
    doc = json.loads((tmp_path / "r" / "robustness.json").read_text())
    part = doc["parts"][0]
    # the fresh path (decoded clip -> features now -> PyTorch) is the run's own cached-feature path
    assert part["parity_clean_vs_predictions_csv"]["n"] == len(test)
    assert part["parity_clean_vs_predictions_csv"]["max_abs_diff"] < 1e-5
    assert part["test_speakers"] == sorted(set(speaker_keys(test)))
    assert not set(part["babble_speakers"]) & set(part["test_speakers"])
    assert [c["name"] for c in doc["conditions"]] == ["clean", "snr10", "telephone"]
    recall = pd.read_csv(tmp_path / "r" / "recall_change.csv")
    assert set(recall["condition"]) == {"clean", "snr10", "telephone"}
    assert (recall.loc[recall["condition"] == "clean", "change"] == 0).all()
    assert "| clean |" in (tmp_path / "r" / "robustness.md").read_text()


def test_bundle_report_is_deterministic_whatever_the_batching(study, ens, tmp_path):
    kw = {"runs": None, "member": None, "bundle": study / "ens" / "bundle", "conditions": "snr5,babble10"}
    a = _report(study, tmp_path / "a", jobs=1, batch=3, **kw)
    b = _report(study, tmp_path / "b", jobs=2, batch=16, **kw)
    pd.testing.assert_frame_equal(a, b)
    assert (tmp_path / "a" / "recall_change.csv").read_bytes() == (tmp_path / "b" / "recall_change.csv").read_bytes()


def test_exported_model_and_its_bundle_hear_the_same_degraded_audio(study, ens, tmp_path):
    from ser.export import export_bundle

    files = export_bundle(study / "ens" / "bundle", tmp_path / "m", quantize="none", progress=False)["files"]
    kw = {"runs": None, "member": None, "conditions": "snr5,babble10,reverb"}
    onnx = _report(study, tmp_path / "a", model=files["fp32"], **kw)
    torch = _report(study, tmp_path / "b", bundle=study / "ens" / "bundle", **kw)
    pd.testing.assert_frame_equal(onnx, torch)  # fp32 graph == PyTorch to 1e-4: the same answers, clip by clip
    doc = json.loads((tmp_path / "a" / "robustness.json").read_text())
    assert doc["settings"]["kind"] == "onnx" and doc["parts"][0]["babble_clips"] > 0


class _Recorder:
    """A scorer that keeps the degraded audio it is given (and answers with fixed probabilities)."""

    clip, labels, kind = ClipConfig(seconds=1.0), ["a", "b"], "probe"

    def __init__(self):
        self.seen = []

    def inputs(self, waves):
        self.seen += [np.array(y) for y in waves]
        return {"n": np.zeros((len(waves), 1, 1))}

    def run(self, inputs):
        return np.full((len(inputs["n"]), 2), 0.5)


def test_every_model_hears_the_same_degraded_audio():
    rng = np.random.default_rng(0)
    waves = [(0.2 * rng.standard_normal(8000 + 800 * i)).astype(np.float32) for i in range(5)]
    conds = parse_conditions("clean,snr10,babble10")
    babble = [w * 0.5 for w in waves]

    def heard(ws, seed=0, jobs=1, batch=2):
        rec = _Recorder()
        score_conditions(rec, ws, conds, seed, babble, batch=batch, jobs=jobs)
        # jobs > 1 may call inputs() out of order: key the audio by its length (unique here) per condition
        n = len(ws)
        return [{len(y): y for y in rec.seen[c * n:(c + 1) * n]} for c in range(len(conds))] if jobs == 1 else rec.seen

    one = heard(waves)
    assert all(np.array_equal(one[0][len(w)], w) for w in waves)  # clean is the decoded audio itself
    assert not np.array_equal(one[1][len(waves[0])], waves[0])
    again = heard(waves[::-1], batch=3)  # other order, other batches: the same audio per clip
    for c in range(len(conds)):
        assert all(np.array_equal(one[c][k], again[c][k]) for k in one[c])
    parallel = heard(waves, jobs=3)
    assert all(any(np.array_equal(y, x) for x in parallel) for c in one for y in c.values())
    other = heard(waves, seed=1)
    assert not np.array_equal(one[1][len(waves[0])], other[1][len(waves[0])])
    assert clip_seed(0, "snr10", "x") != clip_seed(0, "snr5", "x")


def test_onnx_model_scored_like_the_service_and_test_speakers(study, tmp_path):
    from tiny_onnx import make_tiny_model

    manifest = load_manifest("synthetic", study / "syn")
    labels = [e for e in EMOTIONS if e in set(manifest["emotion"])]
    path = make_tiny_model(tmp_path / "tiny.onnx", labels=labels, clip_seconds=1.0)  # records no split
    with pytest.raises(RobustnessError, match="--test-speakers"):
        robustness_report(path, corpus="synthetic", data=study / "syn", conditions="clean", progress=False)
    table = robustness_report(path, corpus="synthetic", data=study / "syn", conditions="quiet", n_boot=10,
                              test_speakers="synthetic/02,03", progress=False, out_dir=tmp_path / "r")
    mine = manifest[manifest["speaker"].isin(["02", "03"])]
    assert table["n"].tolist() == [len(mine)] * 2
    # clean probabilities are the service's answers, file by file
    model = load_model(path)
    targets = resolve_targets(path)
    scorer = targets[0].load()
    waves = [load_audio(p, 16000) for p in mine["path"][:4]]
    got = score_conditions(scorer, waves, [get_condition("clean")], 0)
    for p, row in zip(mine["path"][:4], got.probs["clean"]):
        answer = model.predict(p)
        np.testing.assert_allclose(row, [answer["probabilities"][lab] for lab in model.labels], atol=1e-6)
    # a model that records its split refuses test speakers it learnt from
    doc = read_metadata(path)
    doc["speakers"] = {"train": ["synthetic/01", "synthetic/02"], "val": ["synthetic/04"], "test": ["synthetic/03"]}
    recorded = make_tiny_model(tmp_path / "rec.onnx", labels=labels, metadata=doc)
    with pytest.raises(RobustnessError, match="trained or validated on"):
        robustness_report(recorded, corpus="synthetic", data=study / "syn", conditions="clean",
                          test_speakers="02", progress=False, out_dir=tmp_path / "x")
    table = robustness_report(recorded, corpus="synthetic", data=study / "syn", conditions="clean", n_boot=0,
                              progress=False, out_dir=tmp_path / "y")
    assert table["n"].tolist() == [int((manifest["speaker"] == "03").sum())]
    assert table[["lo", "hi"]].isna().all().all()  # no bootstrap asked


def test_fold_study_scores_every_fold_with_its_own_model(study, tmp_path):
    from ser.audio import ClipConfig
    from ser.augment import AugmentConfig
    from ser.study import run_study
    from ser.train import TrainConfig

    cfg = TrainConfig(epochs=1, patience=1, clip=ClipConfig(seconds=1.0), augment=AugmentConfig(enabled=False),
                      n_boot=10)
    manifest = load_manifest("synthetic", study / "syn")
    run_study(manifest, "rms", cfg, tmp_path / "folds", folds=3, cache_dir=study / "fc", tracking=False,
              progress=False, baseline=False)
    targets = resolve_targets(runs=tmp_path / "folds")  # one trained run: no --member needed
    assert [t.name for t in targets] == ["fold0", "fold1", "fold2"]
    table = robustness_report(runs=tmp_path / "folds", corpus="synthetic", data=study / "syn", progress=False,
                              conditions="babble10", n_boot=10)
    assert table["n"].tolist() == [len(manifest)] * 2  # every speaker tested once
    out = tmp_path / "folds" / "robustness" / "rms"  # the default folder of a fold study's member
    doc = json.loads((out / "robustness.json").read_text())
    assert len(doc["parts"]) == 3
    for part in doc["parts"]:
        assert part["parity_clean_vs_predictions_csv"]["max_abs_diff"] < 1e-5
        assert not set(part["babble_speakers"]) & set(part["test_speakers"])
    spk = [s for p in doc["parts"] for s in p["test_speakers"]]
    assert sorted(spk) == sorted(set(speaker_keys(manifest)))


def test_cli_prints_the_table_and_writes_beside_the_run(study, capsys):
    run = study / "study" / "runs" / "rms"
    assert main(["robustness", "--runs", str(run), "--corpus", "synthetic", "--data", str(study / "syn"),
                 "--conditions", "loud", "--boot", "10", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| clean |" in out and "| loud |" in out
    assert (run / "robustness" / "robustness.csv").is_file()


@pytest.mark.parametrize("args, message", [
    (["--model", "{tmp}/missing.onnx"], "no such file"),
    (["--runs", "{study}/study", "--conditions", "telephone,nosuch"], "nosuch"),
    (["--runs", "{study}/study"], "--member"),
    (["--runs", "{study}/study", "--member", "rms", "--test-speakers", "nobody"], "not speakers of"),
    (["--model", "{tmp}/tiny.onnx", "--test-speakers", "01,02,03,04,05,06", "--conditions", "babble10"],
     "babble"),
])
def test_cli_bad_input_is_one_error_line(study, tmp_path, capsys, args, message):
    from tiny_onnx import make_tiny_model

    make_tiny_model(tmp_path / "tiny.onnx", clip_seconds=1.0)
    argv = [a.format(tmp=tmp_path, study=study) for a in args]
    assert main(["robustness", *argv, "--corpus", "synthetic", "--data", str(study / "syn"), "--quiet",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ser: error:") and message in err[0], err
    assert not (tmp_path / "out").exists()  # refused before any work
