"""Lazy package attributes: a package names its public API, modules load on first use.

So ``import ser`` (or ``ser.export``, ``ser.serve``) stays cheap, and the torch-free paths
never import torch through a package ``__init__``.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping


def lazy_api(package: str, api: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose names ``api`` maps to defining modules.

    Example (in a package ``__init__``)::

        _API = {"load_model": "ser.runtime"}
        __all__ = sorted(_API)
        __getattr__, __dir__ = lazy_api(__name__, _API)
    """
    def __getattr__(name: str) -> Any:
        if name in api:
            value = getattr(importlib.import_module(api[name]), name)
            setattr(sys.modules[package], name, value)  # resolved once
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(api))

    return __getattr__, __dir__
