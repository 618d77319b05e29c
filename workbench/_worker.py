"""The process executor's worker: `python -m workbench._worker PAYLOAD RESULT PARENT_PID ADDRESS_SPACE_LIMIT`.

It runs in a session (and process group) of its own, so the executor can kill it with everything it started,
and asks the kernel to kill it when its parent dies, so a killed notebook or `workbench run` leaves no
worker behind. Its stderr goes to a file the executor quotes in the failed row."""

from __future__ import annotations

import os
import pickle
import signal
import sys
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(70)


def main(argv: list[str]) -> None:
    payload_path, result_path, parent_pid, address_space = argv
    die_with_parent(int(parent_pid))
    from workbench.executors import run_payload
    from workbench.files import atomic_write_bytes

    record = run_payload(Path(payload_path).read_bytes(), int(address_space) or None)
    atomic_write_bytes(result_path, pickle.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1:])
