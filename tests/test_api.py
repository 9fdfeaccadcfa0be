"""The flat public API: every advertised name resolves, and ``import ser`` stays light."""
from __future__ import annotations

import subprocess
import sys

import ser


def test_every_public_name_is_the_object_its_module_defines():
    import importlib

    for name, module in ser._API.items():
        assert getattr(ser, name) is getattr(importlib.import_module(module), name), name


def test_import_ser_loads_no_torch_or_librosa():
    code = "import sys, ser; print('torch' in sys.modules, 'librosa' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
