"""scripts/sweep.py: recipes x features x seeds, ranked by validation UAR, finished runs reused."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ser.corpora import generate_synthetic


SCRIPT = Path(__file__).parents[1] / "scripts" / "sweep.py"


def run_sweep(args: list[str]) -> None:
    # a subprocess, as it is used: its spawned workers re-import the script as __main__
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_sweep_ranks_recipes_by_validation_and_reuses_finished_runs(tmp_path):
    root = generate_synthetic(tmp_path / "syn", speakers=6, per_emotion=2, progress=False)
    grid = {"short": {"epochs": 1, "augment": False, "n_boot": 10},
            "mix": {"epochs": 2, "augment": False, "n_boot": 10, "mixup": 0.4}}
    args = ["--corpus", "synthetic", "--data", str(root), "--features", "rms,zcr", "--seeds", "0",
            "--grid", json.dumps(grid), "--out", str(tmp_path / "sw"), "--cache", str(tmp_path / "fc"),
            "--parallel", "2", "--threads", "1", "--jobs", "1"]
    run_sweep(args)
    df = pd.read_csv(tmp_path / "sw" / "sweep.csv")
    assert len(df) == 4 and set(df.recipe) == {"short", "mix"} and set(df.feature) == {"rms", "zcr"}
    assert (df.epochs_run == df.recipe.map({"short": 1, "mix": 2})).all()
    md = (tmp_path / "sw" / "sweep.md").read_text()
    ranked = [line.split("|")[1].strip() for line in md.splitlines()[4:6]]
    means = df.groupby("recipe").val_uar.mean().sort_values(ascending=False)
    assert ranked == list(means.index)  # ranked by mean validation UAR, never test
    model = tmp_path / "sw" / "mix" / "s0" / "rms" / "model.pt"
    stamp = model.stat().st_mtime_ns
    run_sweep(args)  # a second call reuses the finished runs
    assert model.stat().st_mtime_ns == stamp
    assert pd.read_csv(tmp_path / "sw" / "sweep.csv").equals(df)
