"""The robustness report's files: tables, Markdown, plot and JSON (each written atomically).

:func:`write_report` writes ``robustness.csv``, ``robustness.md``, ``robustness.png``,
``recall_change.csv``, ``recall_change.md`` and ``robustness.json`` into one folder;
:func:`markdown_table` is the table the CLI prints.

Example:
    >>> t = pd.DataFrame({"condition": ["clean", "snr5"], "n": [10, 10], "uar": [0.8, 0.6], "lo": [0.7, 0.5],
    ...                   "hi": [0.9, 0.7], "accuracy": [0.8, 0.6], "macro_f1": [0.8, 0.6], "delta_uar": [0.0, -0.2],
    ...                   "delta_lo": [0.0, -0.3], "delta_hi": [0.0, -0.1], "no_speech_fraction": [0.0, 0.1]})
    >>> print(markdown_table(t).splitlines()[3])
    | snr5 | 10 | 0.600 [0.500, 0.700] | -0.200 [-0.300, -0.100] | 0.600 | 0.600 | 10.0% |
"""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..fileio import atomic_write_bytes, save_figure, write_json_atomic
from ..workers import cpu_cores


def machine_note(threads: int | None = None) -> dict[str, Any]:
    """Where the report was made: CPU architecture and cores, Python and library versions."""
    note: dict[str, Any] = {"machine": platform.machine(), "processor": platform.processor() or None,
                            "cores": cpu_cores(), "python": platform.python_version(), "threads": threads}
    for lib in ("onnxruntime", "torch", "numpy"):
        try:
            note[lib] = __import__(lib).__version__
        except ImportError:  # onnxruntime and torch are both optional for one kind of model
            note[lib] = None
    return note


def _ci(lo: float, hi: float) -> str:
    return "" if np.isnan(lo) else f" [{lo:.3f}, {hi:.3f}]"


def markdown_table(table: pd.DataFrame) -> str:
    """The condition table as Markdown (UAR with its CI, change vs clean with its paired CI,
    no-speech share)."""
    lines = ["| condition | n | UAR [95% CI] | Δ UAR vs clean [paired 95% CI] | accuracy | macro-F1 | no speech |",
             "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(table.itertuples(index=False)):
        # the first row is the reference: its change is 0 by construction, no interval
        d_ci = "" if i == 0 else _ci(r.delta_lo, r.delta_hi)
        lines.append(f"| {r.condition} | {r.n} | {r.uar:.3f}{_ci(r.lo, r.hi)} | {r.delta_uar:+.3f}{d_ci} | "
                     f"{r.accuracy:.3f} | {r.macro_f1:.3f} | {r.no_speech_fraction:.1%} |")
    return "\n".join(lines) + "\n"


def recall_markdown(recall: pd.DataFrame) -> str:
    """Per-class recall, one row per condition: ``0.620 (-0.100)`` = recall (change vs clean)."""
    labels = list(dict.fromkeys(recall["label"]))
    lines = ["| condition | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    first = recall["condition"].iloc[0]
    for cond, part in recall.groupby("condition", sort=False):
        cells = part.set_index("label")
        row = [f"{cells.at[lab, 'recall']:.3f}" + ("" if cond == first else f" ({cells.at[lab, 'change']:+.3f})")
               for lab in labels]
        lines.append(f"| {cond} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot_robustness(table: pd.DataFrame, path: str | Path, n_classes: int, title: str = "") -> Path:
    """UAR per condition (clean on top) with CI error bars, the chance line and the clean level."""
    from matplotlib.figure import Figure

    names = table["condition"].tolist()[::-1]
    d = table.iloc[::-1]
    vals = d["uar"].to_numpy(float)
    err = np.nan_to_num(np.vstack([np.clip(vals - d["lo"].to_numpy(float), 0, None),
                                   np.clip(d["hi"].to_numpy(float) - vals, 0, None)]))
    fig = Figure(figsize=(7, 1.0 + 0.35 * len(d)), layout="constrained")
    ax = fig.add_subplot()
    colors = ["#55a868" if n == table["condition"].iloc[0] else "#4c72b0" for n in names]
    ax.barh(names, vals, xerr=err, color=colors, capsize=3)
    ax.axvline(1.0 / n_classes, color="#c44e52", ls="--", label=f"chance (1/{n_classes})")
    ax.axvline(table["uar"].iloc[0], color="#55a868", ls=":", label="clean")
    ax.legend(loc="lower right", fontsize=8)
    ax.set(xlabel="UAR (95% CI, bootstrap over speakers)", xlim=(0, 1), title=title)
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)


def write_report(out: str | Path, table: pd.DataFrame, recall: pd.DataFrame, doc: Mapping[str, Any]) -> Path:
    """Write every file of the report into ``out`` (created); returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = doc["settings"]
    atomic_write_bytes(out / "robustness.csv", table.to_csv(index=False).encode())
    atomic_write_bytes(out / "recall_change.csv", recall.to_csv(index=False).encode())
    parts, m = doc["parts"], doc["machine"]
    n_spk = sum(len(p["test_speakers"]) for p in parts)
    how = ("the PyTorch members, inputs computed from the degraded audio" if s["kind"] == "pytorch" else
           "the torch-free runtime (as `ser serve`), the voice-activity check recorded but not deciding")
    folds = f" over {len(parts)} folds (each fold's test speakers with its own model)" if len(parts) > 1 else ""
    src = next(iter(s["source"].values())) + (f" (member {s['source']['member']})" if s["source"].get("member") else "")
    n, pool = int(table["n"].iloc[0]), sum(p["babble_clips"] for p in parts)
    babble = f"; babble from {pool} training-speaker clips" if pool else ""
    head = [f"# Robustness of {src}", "",
            f"Command: `{doc['command']}`", "",
            f"{n} clips of {n_spk} test speaker{'s' * (n_spk != 1)} of {s['corpus']} ({parts[0]['speakers_from']})"
            f"{folds}, scored with {how}. Each condition degrades the decoded audio before clip preparation, "
            f"seeded per clip (seed {s['seed']}){babble}. CIs: {s['n_boot']} bootstrap resamples of whole speakers. "
            "\"no speech\": clips the runtime's voice-activity check would answer with `emotion: null`.", "", ""]
    machine = (f"Machine: {m['machine']}, {m['cores']} cores, Python {m['python']}, onnxruntime {m['onnxruntime']}, "
               f"torch {m['torch']}; {doc['timings']['total_s']:.1f} s in all.")
    md = ("\n".join(head) + markdown_table(table) + "\nPer-class recall and its change: `recall_change.md`.\n\n"
          + machine)
    atomic_write_bytes(out / "robustness.md", (md + "\n").encode())
    atomic_write_bytes(out / "recall_change.md", ("# Per-class recall (change vs clean)\n\n" +
                                                  recall_markdown(recall)).encode())
    plot_robustness(table, out / "robustness.png", s["n_classes"], f"{s['corpus']}, {n} clips")
    write_json_atomic(out / "robustness.json", doc)
    return out
