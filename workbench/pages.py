"""What the pages people read (the dashboard, the report) need from the library: its noise kept off them.

    wb.pages.quiet()        first thing in a page's notebook: library warnings, log lines, native-library
                            messages and third-party progress bars go to the server's log (the kernel's own
                            stderr), not into the page; `wb.pages.noise()` returns what was held back

Loading MiniLM prints torchao's "Failed to load …_C_mxfp8.so", torch's pytree deprecation warnings and
transformers' "Loading weights" bar; none of it is for the reader. A test checks that the dashboard and the
report render no stderr block.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import warnings

#: what was kept off the page, newest last (for a report's appendix)
_NOISE: collections.deque[str] = collections.deque(maxlen=500)
_ENV = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error",
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


class _ServerLog:
    """A stderr that writes to the process's own stderr (a Voila server's or papermill's log) and remembers."""

    def __init__(self, target) -> None:
        self._target = target
        self.encoding = getattr(target, "encoding", "utf-8")

    def write(self, text: str) -> int:
        if text.strip():
            _NOISE.append(text.rstrip())
        try:
            return self._target.write(text)
        except Exception:  # a closed or missing server stream: the page still must not get it
            return len(text)

    def flush(self) -> None:
        try:
            self._target.flush()
        except Exception:
            pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._target.fileno()


def quiet() -> None:
    """Keep library noise off the page from now on (idempotent). Call it before the frameworks are imported, so
    that their loggers and progress bars bind to the server's log."""
    for key, value in _ENV.items():
        os.environ.setdefault(key, value)
    if isinstance(sys.stderr, _ServerLog):
        return
    target = sys.__stderr__ or open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)
    sys.stderr = _ServerLog(target)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, force=True)

    def to_log(message, category, filename, lineno, file=None, line=None) -> None:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = to_log


def noise() -> list[str]:
    """The messages kept off the page so far (warnings, log lines, progress bars), oldest first."""
    return list(_NOISE)
