"""`ser sweep`: recipes x features x seeds, ranked by validation UAR, finished runs reused."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from ser.corpora import generate_synthetic


def run_sweep(args: list[str]) -> subprocess.CompletedProcess:
    # a subprocess, as it is used: its workers are spawned processes
    return subprocess.run([sys.executable, "-m", "ser", "-q", "sweep", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_sweep_ranks_recipes_by_validation_and_reuses_finished_runs(tmp_path):
    root = generate_synthetic(tmp_path / "syn", speakers=6, per_emotion=2, progress=False)
    grid = {"short": {"epochs": 1, "augment": False, "n_boot": 10},
            "mix": {"epochs": 2, "augment": False, "n_boot": 10, "mixup": 0.4}}
    args = ["--corpus", "synthetic", "--data", str(root), "--features", "rms,zcr", "--seeds", "0",
            "--grid", json.dumps(grid), "--out", str(tmp_path / "sw"), "--cache", str(tmp_path / "fc"),
            "--parallel", "2", "--threads", "1", "--jobs", "1", "--val", "0.2", "--test", "0.2", "--seconds", "1"]
    proc = run_sweep(args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "# Recipe sweep (ranked by mean validation UAR)" in proc.stdout
    df = pd.read_csv(tmp_path / "sw" / "sweep.csv")
    assert len(df) == 4 and set(df.recipe) == {"short", "mix"} and set(df.feature) == {"rms", "zcr"}
    assert (df.epochs_run == df.recipe.map({"short": 1, "mix": 2})).all()
    md = (tmp_path / "sw" / "sweep.md").read_text()
    ranked = [line.split("|")[1].strip() for line in md.splitlines()[4:6]]
    means = df.groupby("recipe").val_uar.mean().sort_values(ascending=False, kind="stable")
    assert sorted(ranked) == sorted(means.index) and means[ranked[0]] >= means[ranked[1]]  # by validation UAR
    model = tmp_path / "sw" / "mix" / "s0" / "rms" / "model.pt"
    stamp = model.stat().st_mtime_ns
    assert run_sweep(args).returncode == 0  # a second call reuses the finished runs
    assert model.stat().st_mtime_ns == stamp
    assert pd.read_csv(tmp_path / "sw" / "sweep.csv").equals(df)


def test_sweep_bad_grid_is_one_line_error(tmp_path, capsys):
    from ser.cli import main

    base = ["-q", "sweep", "--corpus", "synthetic", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main([*base, "--grid", "{not json"]) == 2
    assert "ser: error: --grid: not a JSON object" in capsys.readouterr().err
    assert main([*base, "--grid", '{"a": 3}']) == 2
    assert "the grid must map recipe names" in capsys.readouterr().err


def test_sweep_refuses_unknown_config_fields(tmp_path):
    from ser.sweep import SweepError, sweep

    with pytest.raises(SweepError, match=r"recipe 'a': unknown TrainConfig fields \['epoch'\]"):
        sweep(pd.DataFrame(), {"a": {"epoch": 3}}, "mel", tmp_path / "o")
    for grid in ({"a": 3}, {}, [{"epochs": 3}]):  # API callers get the same error as the CLI
        with pytest.raises(SweepError, match="the grid must map recipe names"):
            sweep(pd.DataFrame(), grid, "mel", tmp_path / "o")
    with pytest.raises(SweepError, match="no seeds"):
        sweep(pd.DataFrame(), {"a": {}}, "mel", tmp_path / "o", seeds=[])
