"""Experiment tracking: MLflow (SQLite store under ``mlruns/``) and TensorBoard, both optional.

MLflow 3 refuses a plain file store unless told otherwise, so the store is
``sqlite:///mlruns/mlflow.db`` with artifacts under ``mlruns/<experiment>/``. Set
``MLFLOW_TRACKING_URI`` to log elsewhere. With ``enabled=False`` nothing is imported
or written: runs work the same without tracking.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MLRUNS = Path("mlruns")  # relative to the working directory, like MLflow's own default


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v)
    return out


def prepare_store(experiment: str) -> str:
    """Point MLflow at its store (creating the SQLite schema and the experiment if needed).

    Call it once in the parent before training runs start in parallel processes: each
    process would otherwise find a fresh store and migrate its schema at the same time
    (SQLite then fails with "duplicate column"). Returns the tracking URI.
    """
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        MLRUNS.mkdir(exist_ok=True)
        uri = f"sqlite:///{(MLRUNS / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        root = (MLRUNS / experiment).resolve() if uri.startswith("sqlite:") else None
        try:
            mlflow.create_experiment(experiment, artifact_location=root.as_uri() if root else None)
        except mlflow.exceptions.MlflowException:  # made meanwhile by another process
            if mlflow.get_experiment_by_name(experiment) is None:
                raise
    mlflow.set_experiment(experiment)
    return uri


class Tracker:
    """Logs params, per-epoch metrics and final artifacts of one run."""

    def __init__(self, out_dir: str | Path, experiment: str, run_name: str, enabled: bool = True) -> None:
        self.out = Path(out_dir)
        self.enabled = enabled
        self.run = None
        self.tb = None
        if not enabled:
            return
        import mlflow
        from torch.utils.tensorboard import SummaryWriter

        self.mlflow = mlflow
        prepare_store(experiment)
        self.run = mlflow.start_run(run_name=run_name)
        self.tb = SummaryWriter(log_dir=str(self.out / "tb"))

    def log_params(self, params: dict[str, Any]) -> None:
        if self.run is not None:
            flat = {k: str(v)[:6000] for k, v in _flatten(params).items()}
            self.mlflow.log_params(flat)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if self.run is None:
            return
        self.mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)
        for k, v in metrics.items():
            self.tb.add_scalar(k, float(v), step)

    def finish(self, result: dict[str, Any], labels: list[str]) -> None:
        """Log test metrics, the confusion matrix PNG, the report and the checkpoint; close."""
        if self.run is None:
            return
        from .evaluate import format_report, plot_confusion

        try:
            test = result.get("test") or result["val"]
            self.mlflow.log_metrics({f"test_{k}": float(test[k]) for k in ("accuracy", "uar", "macro_f1")})
            png = plot_confusion(test["confusion"], labels, self.out / "confusion.png",
                                 title=f"{result.get('feature', '')} test")
            (self.out / "report.txt").write_text(format_report(test))
            for name in ("model.pt", "model.json", "metrics.json", "report.txt", png.name):
                if (self.out / name).exists():
                    self.mlflow.log_artifact(str(self.out / name))
        finally:
            self.tb.close()
            self.mlflow.end_run()
            self.run = None
