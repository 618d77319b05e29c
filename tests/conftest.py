"""Shared fixtures: zoo models and one measured study, built once per test session."""

from __future__ import annotations

import os
import tempfile

import pytest

# A private cache for the whole session: models are trained once here and shared by every test.
os.environ.setdefault("WORKBENCH_CACHE_DIR", tempfile.mkdtemp(prefix="wb-test-cache-"))

import workbench as wb  # noqa: E402

FAST = wb.TimingConfig(min_time_s=0.05, min_runs=10, warmup_runs=2)
STANDARD_PIPELINES = ["int8-dynamic", "prune(0.5)", "fold-bn + int8-dynamic", "fold-bn"]


def kill_after(proc, done: int) -> list[str]:
    """Read a sweep subprocess's "done <pipeline>" lines; after `done` of them, SIGKILL it. Returns them."""
    import signal

    finished = []
    for line in proc.stdout:
        finished.append(line.split(" ", 1)[1].strip())
        if len(finished) == done:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return finished


@pytest.fixture(scope="session")
def device():
    return wb.device()


@pytest.fixture(scope="session")
def cnn():
    return wb.zoo.load("digits-cnn")


@pytest.fixture(scope="session")
def mlp():
    return wb.zoo.load("digits-mlp")


@pytest.fixture(scope="session")
def cnn_study(cnn):
    model, task = cnn
    return wb.Study(model, task, timing=FAST)


@pytest.fixture(scope="session")
def cnn_results(cnn_study):
    return cnn_study.run(STANDARD_PIPELINES, progress=False)


@pytest.fixture
def fast_timing():
    return FAST
