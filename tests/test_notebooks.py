"""The notebooks execute top to bottom on tiny synthetic settings (they are stored without outputs)."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from ser.corpora import generate_synthetic

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(name: str, params: str, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    cells[0].source = params
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def test_notebooks_are_stored_without_outputs():
    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name


@pytest.mark.slow
def test_comparison_notebook_executes(tmp_path):
    data = generate_synthetic(tmp_path / "syn", speakers=6, per_emotion=1, progress=False)
    params = (f"CORPUS = 'synthetic'\nDATA_DIR = {str(data)!r}\nFEATURES = 'rms,zcr'\nEPOCHS = 1\nFOLDS = None\n"
              f"SECONDS = 1.0\nOUT = {str(tmp_path / 'study')!r}\nCACHE = {str(tmp_path / 'fc')!r}\n"
              "TRACKING = False\nJOBS = 1")
    nb = run_notebook("ResNet_porownanie.ipynb", params, tmp_path)
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "files:    48" in text
    assert (tmp_path / "study" / "leaderboard.csv").is_file()
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2


@pytest.mark.slow
def test_ensemble_notebook_executes(tmp_path):
    from ser.audio import ClipConfig
    from ser.augment import AugmentConfig
    from ser.study import run_study
    from ser.corpora import load_manifest
    from ser.train import TrainConfig

    data = generate_synthetic(tmp_path / "syn", speakers=6, per_emotion=1, progress=False)
    cfg = TrainConfig(epochs=1, patience=1, clip=ClipConfig(seconds=1.0),
                      augment=AugmentConfig(enabled=False), n_boot=10)
    run_study(load_manifest("synthetic", data), "rms,zcr", cfg, tmp_path / "study", val=0.2, test=0.2,
            cache_dir=tmp_path / "fc", tracking=False, progress=False, baseline=False)
    params = (f"RUNS = {str(tmp_path / 'study')!r}\nOUT = {str(tmp_path / 'ens')!r}\nTOP = 2\nFEATURES = None\n"
              f"TRIALS = 5\nSEED = 0\nN_BOOT = 10\nCACHE = {str(tmp_path / 'fc')!r}\nTRACKING = False")
    nb = run_notebook("ResNet_ensemble.ipynb", params, tmp_path)
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "bundle reproduces the stored test probabilities: True" in text
    assert (tmp_path / "ens" / "bundle" / "bundle.json").is_file()
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2
