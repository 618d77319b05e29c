"""`workbench app`: pre-warm the model, then serve the dashboard notebook (package data) with Voila on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from ._net import free_port
from ._optional import require
from .errors import WorkbenchError
from .paths import cache_dir

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
DASHBOARD = NOTEBOOKS / "dashboard.ipynb"
#: holds voila/templates/workbench: Voila's lab template without its CDN stylesheets
TEMPLATES = NOTEBOOKS / "jupyter"


def prewarm(model: str, store: Path, **source) -> None:
    """Train (or load) the model and measure its baseline now, into the app's store: every page of this
    server starts from it at once. Measured afresh at each start, so a stale timing never carries over."""
    from .profiling.timing import TimingConfig
    from .sources import open_model, with_holdout
    from .store import ResultsStore
    from .study import Study

    handle, task = open_model(model, **source)
    task, _ = with_holdout(model, handle, task, data=source.get("data"))  # what the dashboard measures on
    ResultsStore(store).put(Study(handle, task, timing=TimingConfig.interactive()).trial("baseline"))


def serve(port: int = 8866, model: str = "digits-cnn", *, data: str | None = None, task: str | None = None,
          architecture: str | None = None, trusted: bool = False, models_dir: str | None = None) -> int:
    require("voila", "app", "the dashboard")
    if not DASHBOARD.is_file():
        raise WorkbenchError(f"the dashboard notebook is not at {DASHBOARD}: reinstall efficiency-workbench[app]")
    if not 0 <= port <= 65535:
        raise WorkbenchError(f"--port must be between 0 and 65535, got {port}")
    if models_dir is not None and not Path(models_dir).is_dir():
        raise WorkbenchError(f"--models {models_dir!r} is not a folder")
    port = port or free_port()
    store = cache_dir() / "app-results.db"
    from .sources import page_source

    data, task = page_source(model, data, task)
    source = {"data": data, "task": task, "architecture": architecture, "trusted": trusted}
    print(f"pre-warming {model} (trained model and baseline cached in {store}) …", file=sys.stderr, flush=True)
    prewarm(model, store, **source)
    jupyter_path = os.pathsep.join(p for p in (str(TEMPLATES), os.environ.get("JUPYTER_PATH", "")) if p)
    env = {**os.environ, "WORKBENCH_MODEL": model, "WORKBENCH_APP_STORE": str(store), "JUPYTER_PATH": jupyter_path,
           "WORKBENCH_SOURCE": json.dumps(source), "WORKBENCH_MODELS_DIR": models_dir or ""}
    if architecture:  # module:Class is imported by the dashboard's kernel, from where the app was started
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "voila", str(DASHBOARD), f"--port={port}", "--no-browser", "--template=workbench",
           "--Voila.ip=127.0.0.1", "--theme=light", "--show_tracebacks=True"]
    proc = subprocess.Popen(cmd, env=env)
    print(f"Workbench dashboard: http://127.0.0.1:{port}/", flush=True)
    # SIGTERM to this wrapper (a test, a service manager) is passed on: Voila then shuts its kernels down
    # before it exits, instead of leaving them running
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
