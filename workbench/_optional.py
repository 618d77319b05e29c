"""Lazy imports of optional frameworks: a missing extra names the pip command to run."""

from __future__ import annotations

import importlib
import importlib.metadata
from types import ModuleType

from .errors import MissingDependencyError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import `module` or raise MissingDependencyError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name and module.split(".")[0] != exc.name.split(".")[0]:
            raise  # the package is there but broken: show the real error
        raise MissingDependencyError(module, extra, purpose) from exc


def version_of(distribution: str) -> str | None:
    """Installed version of a distribution, without importing it."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
