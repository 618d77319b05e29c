"""The process executors' workers.

    python -m workbench._worker PAYLOAD RESULT PARENT_PID ADDRESS_SPACE_LIMIT
        one trial (the process executor): read the pickled trial, write its pickled record, exit
    python -m workbench._worker --warm SOCKET_FD PARENT_PID ADDRESS_SPACE_LIMIT MODULES
        the warm executor's worker: import MODULES (comma-separated) at once, then run trial after trial sent
        over the socket, keeping each bench (its model, task and built handles) between trials

Either runs in a session (and process group) of its own, so the executor can kill it with everything it
started, and ends when its parent dies, so a killed notebook or `workbench run` leaves no worker behind. Its
stderr goes to a file the executor quotes in a failed row."""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import sys
import threading
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1
#: benches a warm worker keeps (a panel's study, and the one before it while a model switch settles)
KEEP_BENCHES = 2
#: built models a warm worker keeps per bench between trials (a text model is ~90 MB each); runtime exports stay
KEEP_BUILT = 4


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to kill this process when the thread that started it ends (fine for a one-trial worker,
    whose parent thread waits for it)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(70)


def watch_parent(parent_pid: int, every_s: float = 0.5) -> None:
    """End this process when its parent process is gone. A warm worker may be started by a thread that ends
    long before the process does (a panel's background thread), so the kernel's parent-death signal, which
    follows the thread, would kill it too early: its parent is watched instead."""
    if os.getppid() != parent_pid:
        os._exit(70)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(every_s)
        os._exit(70)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def limit_address_space(limit: int) -> None:
    """Cap this process's address space at `limit` bytes (0: no cap): a runaway allocation fails with MemoryError."""
    if limit:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def serve_warm(fd: int, modules: list[str]) -> None:
    """Answer trial messages on the socket `fd` until it closes: (key, bench or None, observed state, pipeline,
    trial_id) in, a pickled TrialRecord (or ("error", text)) out."""
    import socket
    from multiprocessing.connection import Connection

    import cloudpickle  # noqa: F401  (what the messages were pickled with)

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the trial that needs it says so; the worker still serves the others
            sys.stderr.write(f"warm worker: could not import {name}: {type(exc).__name__}: {exc}\n")
    from workbench.trial import Trial

    conn = Connection(socket.socket(fileno=fd).detach())
    benches: dict[str, object] = {}
    conn.send_bytes(pickle.dumps(("ready", os.getpid())))
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            key, bench, state, pipeline, trial_id = pickle.loads(message)
            if bench is not None:
                benches.pop(key, None)
                benches[key] = bench
                for old in list(benches)[:-KEEP_BENCHES]:
                    del benches[old]
            bench = benches[key]
            bench.__dict__.update(state)  # what the study observed since (the baseline's metric)
            answer = Trial(bench, pipeline, trial_id).run()
            _forget_built(bench)
        except Exception as exc:
            answer = ("error", f"{type(exc).__name__}: {exc}")
        conn.send_bytes(pickle.dumps(answer))


def _forget_built(bench: object) -> None:
    """Keep the newest KEEP_BUILT built models of a bench: a worker that serves a whole session must not grow
    with every trial it ran."""
    built = getattr(bench, "_handles", None)
    release = getattr(bench, "release", None)
    if built and release and len(built) > KEEP_BUILT:
        old = set(list(built)[:-KEEP_BUILT])
        release(lambda spec: spec in old)


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--warm":
        fd, parent_pid, address_space, modules = argv[1:]
        watch_parent(int(parent_pid))
        limit_address_space(int(address_space))
        serve_warm(int(fd), [m for m in modules.split(",") if m])
        return
    payload_path, result_path, parent_pid, address_space = argv
    die_with_parent(int(parent_pid))
    from workbench.executors import run_payload
    from workbench.files import atomic_write_bytes

    record = run_payload(Path(payload_path).read_bytes(), int(address_space) or None)
    atomic_write_bytes(result_path, pickle.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1:])
