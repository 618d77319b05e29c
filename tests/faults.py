"""Test-only recipes that misbehave on purpose (imported by the tests and, through pickling, by workers)."""

from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass

import numpy as np

from workbench.recipes import RECIPES, Recipe, register_handler, register_recipe


def _recipe(name: str):
    def deco(fn):
        if name in RECIPES:
            return fn
        cls = dataclass(frozen=True)(type(f"_{name.replace('-', '_')}", (Recipe,),
                                          {"__module__": __name__, "name": name, "kind": "graph",
                                           "formats": ("torch",), "__annotations__": {}}))
        globals()[cls.__name__] = cls
        register_recipe(cls)
        register_handler(cls, "torch")(fn)
        return fn
    return deco


@_recipe("test-abort")
def _abort(recipe, handle, context):
    os.abort()


@_recipe("test-segfault")
def _segfault(recipe, handle, context):
    ctypes.string_at(0)


@_recipe("test-hang")
def _hang(recipe, handle, context):
    time.sleep(3600)


@_recipe("test-hog")
def _hog(recipe, handle, context):
    hoard = []
    while True:
        hoard.append(np.ones(2**27))  # 1 GiB at a time, until the worker's memory limit stops it


@_recipe("test-spawn-hang")
def _spawn_hang(recipe, handle, context):
    """Starts a process of its own (its pid in $WB_TEST_CHILD_PID_FILE), then hangs."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    with open(os.environ["WB_TEST_CHILD_PID_FILE"], "w") as fh:
        fh.write(str(child.pid))
    time.sleep(3600)


@_recipe("test-stderr-exit")
def _stderr_exit(recipe, handle, context):
    import sys

    sys.stderr.write("fatal: the native library could not find libfoo.so.3\n")
    sys.stderr.flush()
    os._exit(3)
