"""The package's shape: its import graph, the torch-free serving path and the flat API.

These read the source (``ast``), so a new module is checked the day it is added:
- no import cycles between modules of ``ser``, counting imports inside functions too;
- no module takes another module's ``_private`` names (imported or reached as an attribute);
- layers import only downwards (the table below is the design's order);
- importing the runtime and answering one prediction loads no training library;
- every name of the flat API is a function, a class or a constant, never a module.
"""
from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import ser

SRC = Path(ser.__file__).parent

# the design's layers, bottom first: a module may import its own layer or lower ones only
LAYERS = [
    {"ser", "ser._lazy", "ser.errors", "ser.fileio", "ser.argtypes", "ser.workers"},
    {"ser.audio"},
    {"ser.corpora", "ser.features", "ser.encoders", "ser.splits", "ser.representations", "ser.vad", "ser.degrade"},
    {"ser.augment", "ser.runtime", "ser.runtime_inputs", "ser.modelmeta"},
    {"ser.cache"},
    {"ser.models", "ser.evaluate", "ser.tracking", "ser.checkpoint"},
    {"ser.train", "ser.baseline", "ser.probe"},
    {"ser.study", "ser.sweep", "ser.runner"},
    {"ser.ensemble"},
    {"ser.export", "ser.robustness"},
    {"ser.serve"},
    {"ser.cli", "ser.__main__"},
]
# what serving may load, and what it must not
FORBIDDEN_AT_SERVING = ("torch", "pandas", "sqlite3", "tqdm", "sklearn", "optuna", "mlflow")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` reads from."""
    if not node.level:
        return node.module or ""
    is_pkg = MODULES[module].name == "__init__.py"
    base = module.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, str, int]]:
    """``(imported ser module, imported name or '', line)`` for every import in ``module``."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "ser"]
        elif isinstance(node, ast.ImportFrom):
            src = _resolve(module, node)
            if src.split(".")[0] != "ser":
                continue
            for a in node.names:
                sub = f"{src}.{a.name}"
                out.append((sub, "", node.lineno) if sub in MODULES else (src, a.name, node.lineno))
    return out


def _graph() -> dict[str, set[str]]:
    return {m: {dst for dst, _, _ in _imports(m) if dst in MODULES and dst != m} for m in MODULES}


def _layer(module: str) -> int:
    for i, layer in enumerate(LAYERS):
        if any(module == top or module.startswith(top + ".") for top in layer if top != "ser") or module in layer:
            return i
    raise AssertionError(f"{module} is in no layer of LAYERS: add it where the design puts it")


def test_no_import_cycles():
    graph, state, cycles = _graph(), {}, []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for dst in sorted(graph[m]):
            if state.get(dst) == "open":
                cycles.append(stack[stack.index(dst):] + [dst] if dst in stack else [m, dst])
            elif dst not in state:
                visit(dst, stack + [dst])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_module_imports_another_modules_private_names():
    bad = []
    for m in MODULES:
        for src, name, line in _imports(m):
            if name.startswith("_") and not name.startswith("__") and src != m:
                bad.append(f"{m}:{line} imports {src}.{name}")
        tree = ast.parse(MODULES[m].read_text())
        aliases = {}  # local names bound to ser modules
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and _resolve(m, node).split(".")[0] == "ser":
                for a in node.names:
                    if f"{_resolve(m, node)}.{a.name}" in MODULES:
                        aliases[a.asname or a.name] = f"{_resolve(m, node)}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in MODULES and a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                bad.append(f"{m}:{node.lineno} reaches {aliases[node.value.id]}.{node.attr}")
    assert not bad, "\n".join(bad)


def test_layers_import_only_downwards():
    bad = [f"{m} (layer {_layer(m)}) imports {dst} (layer {_layer(dst)})"
           for m, dsts in _graph().items() for dst in dsts if _layer(dst) > _layer(m)]
    assert not bad, "\n".join(bad)


def test_the_graph_sees_lazy_imports():
    # the checks above are only worth something if imports inside functions count
    assert "ser.study" in _graph()["ser.cli.train_commands"]


def test_serving_loads_no_training_library(tmp_path):
    from tiny_onnx import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny.onnx")
    clip = tmp_path / "clip.wav"
    t = np.arange(16000 * 2) / 16000
    sf.write(clip, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    code = f"""
import json, sys
from ser.runtime import load_model
answer = load_model({str(model)!r}).predict({str(clip)!r})
print(json.dumps({{"emotion": answer["emotion"],
                  "loaded": sorted(m for m in {FORBIDDEN_AT_SERVING!r} if m in sys.modules)}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["emotion"] is not None
    assert result["loaded"] == [], f"serving loaded {result['loaded']}"


def _import_everything() -> None:
    for info in pkgutil.walk_packages(ser.__path__, "ser."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)


CONSTANTS = {"SAMPLE_RATE": int, "EMOTIONS": tuple}


def test_flat_api_names_are_functions_classes_or_constants_even_after_every_import():
    _import_everything()  # a submodule import sets the package attribute of its name
    for name in ser.__all__:
        value = getattr(ser, name)
        assert not isinstance(value, types.ModuleType), f"ser.{name} is a module, not the API object"
        if name in CONSTANTS:
            assert isinstance(value, CONSTANTS[name]), name
        else:
            assert callable(value), f"ser.{name} is not callable"


def test_flat_api_names_never_equal_a_submodule():
    submodules = {m.split(".")[1] for m in MODULES if m.count(".") >= 1}
    assert not set(ser.__all__) & submodules


@pytest.mark.parametrize("package", ["ser.export", "ser.serve", "ser.cache", "ser.ensemble", "ser.encoders"])
def test_subpackage_api_names_are_not_modules(package):
    pkg = importlib.import_module(package)
    _import_everything()
    for name in getattr(pkg, "__all__", []):
        assert not isinstance(getattr(pkg, name), types.ModuleType), f"{package}.{name} is a module"
