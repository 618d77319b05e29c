"""`workbench app`: pre-warm the model, then serve the dashboard notebook (package data) with Voila.

A service to leave running: loopback by default (another address needs a token, generated and printed when not
given), Host-header checks on, no tracebacks to clients (they go to the server's log), idle sessions culled, a cap
on sessions at once, and the port asked for or a clear error (Voila would quietly take another one)."""

from __future__ import annotations

import errno
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path

from ._net import free_port, is_loopback
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


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise WorkbenchError(f"port {port} on {host} is in use (another workbench app?): choose another with "
                                     "--port, or --port 0 for a free one") from None
            raise WorkbenchError(f"cannot serve on {host}:{port}: {exc.strerror} — check --host and --port") from None


def serve(port: int = 8866, model: str = "digits-cnn", *, data: str | None = None, task: str | None = None,
          architecture: str | None = None, trusted: bool = False, models_dir: str | None = None,
          host: str = "127.0.0.1", token: str | None = None, idle_timeout: int = 300, max_sessions: int = 8,
          trial_timeout: float = 300, trial_memory_gb: float | None = None) -> int:
    """Serve the dashboard until interrupted. `idle_timeout`: seconds after its page goes away (or a client that
    never opened one) that a session's kernel is shut down (0: never); `max_sessions`: kernels at once (0: no cap),
    a page beyond it is told the server is busy (HTTP 503). Each session runs its trials in a warm worker process
    (`WarmExecutor`): `trial_timeout` seconds and `trial_memory_gb` GiB (default 80% of what the machine allows)
    per trial, past which the trial is killed and shown as a failed row."""
    from .executors import WarmExecutor
    require("voila", "app", "the dashboard")
    if not DASHBOARD.is_file():
        raise WorkbenchError(f"the dashboard notebook is not at {DASHBOARD}: reinstall efficiency-workbench[app]")
    if not 0 <= port <= 65535:
        raise WorkbenchError(f"--port must be between 0 and 65535, got {port}")
    if idle_timeout < 0 or max_sessions < 0:
        raise WorkbenchError(f"--idle-timeout and --max-sessions must be 0 or more, got {idle_timeout} and {max_sessions}")
    memory = -1 if trial_memory_gb is None else int(trial_memory_gb * 2**30)
    WarmExecutor(timeout_s=trial_timeout, memory_limit_bytes=memory)  # bad limits are told here, not on every page
    if models_dir is not None and not Path(models_dir).is_dir():
        raise WorkbenchError(f"--models {models_dir!r} is not a folder")
    if token is not None and len(token) < 8:
        raise WorkbenchError("--token must be at least 8 characters (or leave it out and one is generated)")
    if not is_loopback(host) and not token:
        token = secrets.token_urlsafe(24)  # never an open server beyond this machine
    port = port or free_port()
    _check_port(host, port)
    store = cache_dir() / "app-results.db"
    from .sources import page_source

    data, task = page_source(model, data, task)
    source = {"data": data, "task": task, "architecture": architecture, "trusted": trusted}
    print(f"pre-warming {model} (trained model and baseline cached in {store}) …", file=sys.stderr, flush=True)
    prewarm(model, store, **source)
    jupyter_path = os.pathsep.join(p for p in (str(TEMPLATES), os.environ.get("JUPYTER_PATH", "")) if p)
    env = {**os.environ, "WORKBENCH_MODEL": model, "WORKBENCH_APP_STORE": str(store), "JUPYTER_PATH": jupyter_path,
           "WORKBENCH_SOURCE": json.dumps(source), "WORKBENCH_MODELS_DIR": models_dir or "",
           "WORKBENCH_TRIAL_TIMEOUT": str(trial_timeout), "WORKBENCH_TRIAL_MEMORY": str(memory)}
    if architecture:  # module:Class is imported by the dashboard's kernel, from where the app was started
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "workbench._voila_server", str(DASHBOARD), f"--port={port}", "--no-browser",
           "--template=workbench", f"--Voila.ip={host}", "--Voila.port_retries=0", "--theme=light",
           "--show_tracebacks=False", f"--max-sessions={max_sessions}",
           f"--MappingKernelManager.cull_idle_timeout={idle_timeout}",
           f"--MappingKernelManager.cull_interval={max(1, min(60, idle_timeout // 2))}",
           "--MappingKernelManager.cull_connected=False"]
    if token:
        env["WORKBENCH_APP_TOKEN"] = token  # through the environment: a token on the command line is in `ps`
    proc = subprocess.Popen(cmd, env=env)
    shown = socket.gethostname() if host in ("", "0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
    print(f"Workbench dashboard: http://{shown}:{port}/" + (f"?token={token}" if token else ""), flush=True)
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
