"""Bad input across the public API and the CLI: each case gives a clear error (the right type, a message
that says what was wrong) or a failed/unsupported row — and nothing already stored is lost."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import workbench as wb
from workbench.errors import (
    DataError,
    IncompatibleRecipesError,
    ModelError,
    ParameterError,
    SpecError,
    UnknownNameError,
    UnsafeModelError,
    WorkbenchError,
)

from . import faults  # noqa: F401
from .conftest import FAST


@pytest.fixture(scope="module")
def store(tmp_path_factory, cnn):
    model, task = cnn
    path = tmp_path_factory.mktemp("bad") / "kept.db"
    wb.Study(model, task, timing=FAST, store=path, measure_memory=False).run(["fold-bn", "prune(0.5)"],
                                                                             progress=False)
    return wb.ResultsStore(path)


@pytest.fixture(scope="module")
def study(cnn, store):
    model, task = cnn
    return wb.Study(model, task, timing=FAST, store=store, measure_memory=False)


@pytest.fixture(autouse=True)
def nothing_stored_is_lost(store):
    before = {r["trial_id"]: r for r in store.rows()}
    yield
    after = {r["trial_id"]: r for r in store.rows()}
    assert store.check() == "ok"
    assert all(after.get(k) == v for k, v in before.items()), "a stored trial was lost or changed"


def _digits(n=8):
    return np.random.default_rng(0).random((n, 1, 8, 8), dtype=np.float32), np.arange(n) % 10


def _nan_model(value):
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():
        net[1].weight[0, 0] = value
    return net


def _evil(tmp_path):
    import os

    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "evil.pt"
    torch.save({"w": Payload()}, path)
    return path


def _damaged_store(tmp_path):
    """A store whose pages in the middle were overwritten (a disk or copy fault)."""
    import os
    import sqlite3

    path = tmp_path / "damaged.db"
    store = wb.ResultsStore(path)
    for i in range(300):
        store.put(wb.trial.TrialRecord({"trial_id": f"t{i}", "pipeline": "x" * 200, "status": "ok"}).row)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(path, "r+b") as fh:
        fh.seek(4096 * 3)
        fh.write(os.urandom(4096 * 4))
    return path


class _DictForward(nn.Module):
    """A forward that returns a dict with no tensor the workbench can compare (no logits)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return {"scores": self.fc(x.flatten(1))}


def _parquet_without_pyarrow(study, monkeypatch_path):
    results = study.run(["fold-bn"], progress=False)
    saved = sys.modules.get("pyarrow")
    sys.modules["pyarrow"] = None  # an environment that lost pyarrow
    try:
        results.save(monkeypatch_path / "r.parquet")
    finally:
        sys.modules["pyarrow"] = saved


def _locked_store(p):
    """A store another writer holds an exclusive transaction on, opened with a 0.5 s wait."""
    import sqlite3

    path = p / "locked.db"
    wb.ResultsStore(path)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        wb.ResultsStore(path, timeout_s=0.5).put({"trial_id": "x", "pipeline": "fold-bn", "status": "ok"})
    finally:
        other.execute("ROLLBACK")
        other.close()


def _checkpoint_without_weights(p):
    path = p / "ckpt.pt"
    torch.save({"epoch": 3, "optimizer": {"lr": torch.tensor(0.1)}, "note": "no weights"}, path)
    return wb.load_model(path, architecture=nn.Linear(2, 2))


CASES = {
    # -- pipeline specs ----------------------------------------------------------------------------
    "unknown recipe": (lambda s, t: wb.Pipeline.parse("int4-magic"), UnknownNameError, "known recipes"),
    "sparsity above 1": (lambda s, t: wb.Pipeline.parse("prune(1.5)"), ParameterError, "[0.0, 1.0)"),
    "negative sparsity": (lambda s, t: wb.Pipeline.parse("prune(-0.2)"), ParameterError, "[0.0, 1.0)"),
    "word for a number": (lambda s, t: wb.Pipeline.parse("prune(lots)"), ParameterError, "a number"),
    "unknown parameter": (lambda s, t: wb.Pipeline.parse("prune(amount=0.5)"), ParameterError, "sparsity"),
    "unclosed parenthesis": (lambda s, t: wb.Pipeline.parse("prune(0.5"), SpecError, "unclosed"),
    "empty spec": (lambda s, t: wb.Pipeline.parse(""), SpecError, "baseline"),
    "dangling plus": (lambda s, t: wb.Pipeline.parse("prune(0.5) +"), SpecError, "'+'"),
    "prune after int8": (lambda s, t: wb.Pipeline.parse("int8-dynamic + prune(0.5)"), IncompatibleRecipesError,
                         "must come before"),
    "two precisions": (lambda s, t: wb.Pipeline.parse("int8-static + fp16"), IncompatibleRecipesError,
                       "one precision"),
    "bad engine": (lambda s, t: wb.Pipeline.parse("int8-static(engine=tpu)"), ParameterError, "x86"),
    "2:4 at 30%": (lambda s, t: wb.Pipeline.parse("prune(0.3, pattern=2:4)"), ParameterError, "0.5 with"),
    "bad spec in a sweep": (lambda s, t: s.run(["fold-bn", "nope"], progress=False), UnknownNameError, "nope"),
    "not a spec": (lambda s, t: s.run(42, progress=False), SpecError, "spec string"),
    "bad pipeline dict": (lambda s, t: s.run([{"steps": [{"sparsity": 1}]}], progress=False), SpecError, "recipe"),
    # -- data ------------------------------------------------------------------------------------------
    "empty inputs": (lambda s, t: wb.tasks.Classification(np.zeros((0, 1, 8, 8)), np.zeros(0, int)), DataError,
                     "empty"),
    "mismatched labels": (lambda s, t: wb.tasks.Classification(_digits()[0], np.zeros(3, int)), DataError,
                          "must match"),
    "NaN inputs": (lambda s, t: wb.tasks.Classification(np.full((4, 1, 8, 8), np.nan), np.zeros(4, int)),
                   DataError, "NaN/Inf"),
    "Inf inputs": (lambda s, t: wb.tasks.Classification(np.full((4, 1, 8, 8), np.inf), np.zeros(4, int)),
                   DataError, "NaN/Inf"),
    "labels as a matrix": (lambda s, t: wb.tasks.Classification(_digits()[0], np.zeros((8, 2), int)), DataError,
                           "1-D"),
    "string inputs": (lambda s, t: wb.tasks.Classification(np.array([["a"]] * 4, dtype=object), np.zeros(4, int)),
                      DataError, "not numeric"),
    "no labels": (lambda s, t: wb.tasks.Classification(_digits()[0]), DataError, "needs labels"),
    "train of another shape": (lambda s, t: wb.tasks.Classification(*_digits(), train=(np.zeros((4, 3)),
                                                                                         np.zeros(4, int))),
                               DataError, "per sample"),
    # -- models ----------------------------------------------------------------------------------------
    "not a model": (lambda s, t: wb.Study(object(), t[1]), ModelError, "torch.nn.Module"),
    "a path instead of a model": (lambda s, t: wb.Study("model.pt", t[1]), ModelError, "torch.nn.Module"),
    "not a task": (lambda s, t: wb.Study(t[0], [1, 2, 3]), DataError, "workbench Task"),
    "wrong input shape": (lambda s, t: wb.Study(t[0], wb.tasks.Classification(np.zeros((4, 3), np.float32),
                                                                              np.zeros(4, int))),
                          ModelError, "shape (4, 3)"),
    "wrong input dtype": (lambda s, t: wb.Study(t[0], wb.tasks.Classification(np.zeros((4, 1, 8, 8), np.int64),
                                                                              np.zeros(4, int))),
                          ModelError, "raised"),
    "NaN weights": (lambda s, t: wb.Study(_nan_model(float("nan")), wb.tasks.Classification(*_digits())),
                    ModelError, "NaN/Inf"),
    "Inf weights": (lambda s, t: wb.Study(_nan_model(float("inf")), wb.tasks.Classification(*_digits())),
                    ModelError, "NaN/Inf"),
    "too few classes": (lambda s, t: wb.Study(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)),
                                              wb.tasks.Classification(*_digits())), DataError, "labels go up to 7"),
    # -- settings ----------------------------------------------------------------------------------------
    "zero batch": (lambda s, t: wb.Study(t[0], t[1], batch_size=0), ParameterError, "batch_size"),
    "negative batch": (lambda s, t: wb.Study(t[0], t[1], batch_size=-3), ParameterError, "batch_size"),
    "zero threads": (lambda s, t: wb.Study(t[0], t[1], threads=0), ParameterError, "threads"),
    "negative timing": (lambda s, t: wb.TimingConfig(min_time_s=-1), ParameterError, "min_time_s"),
    "negative timeout": (lambda s, t: wb.ProcessExecutor(timeout_s=-5), WorkbenchError, "positive number"),
    "unknown executor": (lambda s, t: wb.Study(t[0], t[1], executor="gpu-farm"), UnknownNameError, "process"),
    "unknown zoo model": (lambda s, t: wb.zoo.load("resnet-9000"), UnknownNameError, "digits-cnn"),
    "training split": (lambda s, t: wb.zoo.load("digits-cnn", split="train"), DataError, "'val' or 'test'"),
    # -- files -----------------------------------------------------------------------------------------
    "results to .xlsx": (lambda s, t, p: s.run(["fold-bn"], progress=False).save(p / "r.xlsx"), WorkbenchError,
                         ".csv or .parquet"),
    "results under a file": (lambda s, t, p: (p / "f").write_text("x") and s.run(["fold-bn"], progress=False)
                             .save(p / "f" / "r.csv"), WorkbenchError, "cannot write"),
    "corrupt results file": (lambda s, t, p: (p / "r.parquet").write_bytes(b"nope") and wb.Results.load(
        p / "r.parquet"), DataError, "cannot read"),
    "store is a folder": (lambda s, t, p: (p / "d.db").mkdir() or wb.ResultsStore(p / "d.db"), WorkbenchError,
                          "folder"),
    "store is not sqlite": (lambda s, t, p: (p / "j.db").write_bytes(b"junk" * 100) and wb.ResultsStore(
        p / "j.db"), DataError, "not a workbench results store"),
    "store with a damaged page": (lambda s, t, p: wb.ResultsStore(_damaged_store(p)), DataError,
                                  "is damaged (database disk image is malformed)"),
    "memory limit above the machine's": (lambda s, t: wb.ProcessExecutor(memory_limit_bytes=2**52), ParameterError,
                                         "the memory this machine (or its cgroup) allows"),
    "memory limit as a float": (lambda s, t: wb.ProcessExecutor(memory_limit_bytes=3e9), ParameterError,
                                "a whole number of bytes"),
    "dask workers as a string": (lambda s, t: wb.DaskExecutor(n_workers="2"), ParameterError, "whole number >= 1"),
    "malicious pickle": (lambda s, t, p: wb.load_model(_evil(p), architecture=nn.Linear(2, 2)), UnsafeModelError,
                         "would execute code"),
    "corrupt model file": (lambda s, t, p: (p / "c.pt").write_bytes(b"\x00" * 64) and wb.load_model(p / "c.pt"),
                           DataError, "cannot read model file"),
    "model file of unknown type": (lambda s, t, p: (p / "m.onnx2").write_bytes(b"x") and wb.load_model(
        p / "m.onnx2"), DataError, "unsupported model file type"),
    "missing model file": (lambda s, t, p: wb.load_model(p / "nope.pt"), DataError, "no model file"),
    "checkpoint without weights": (lambda s, t, p: _checkpoint_without_weights(p), DataError,
                                   "no model weights under any of state_dict"),
    "results in a read-only folder": (lambda s, t, p: s.run(["fold-bn"], progress=False).save(
        "/sys/workbench-results/r.csv"), WorkbenchError, "cannot write results"),
    "parquet without pyarrow": (lambda s, t, p: _parquet_without_pyarrow(s, p), wb.errors.MissingDependencyError,
                                "pip install pyarrow"),
    "store locked past its timeout": (lambda s, t, p: _locked_store(p), WorkbenchError,
                                      "stayed locked by another writer for 0.5 s"),
    "row value JSON cannot encode": (lambda s, t, p: wb.ResultsStore(p / "j.db").put(
        {"trial_id": "a", "pipeline": "fold-bn", "status": "ok", "engine": object()}), DataError,
        "column 'engine' holds a value a results row cannot store"),
    "store wait as a negative number": (lambda s, t, p: wb.ResultsStore(p / "n.db", timeout_s=-1), ParameterError,
                                        "ResultsStore"),
    # -- sizes and machines ------------------------------------------------------------------------------
    "a batch that cannot fit in memory": (lambda s, t: wb.Study(t[0], t[1], batch_size=10**10), ParameterError,
                                          "fit in memory"),
    "threads beyond the machine's cores": (lambda s, t: wb.Study(t[0], t[1], threads=10**6), ParameterError,
                                           "logical cores of this machine"),
    "warm executor with no time": (lambda s, t: wb.WarmExecutor(timeout_s=0), ParameterError, "positive number"),
    "warm executor memory above the machine's": (lambda s, t: wb.WarmExecutor(memory_limit_bytes=2**52),
                                                 ParameterError, "the memory this machine"),
    "a forward returning a dict without logits": (lambda s, t: wb.Study(_DictForward(), t[1]), ModelError,
                                                  "returned dict"),
    # -- text that only looks right ----------------------------------------------------------------------
    "a look-alike plus sign": (lambda s, t: wb.Pipeline.parse("prune(0.5) \uff0b fold-bn"), SpecError,
                               "FULLWIDTH PLUS SIGN (U+FF0B). it looks like '+'"),
    "a Cyrillic letter in a recipe name": (lambda s, t: wb.Pipeline.parse("int8-dyn\u0430mic"), SpecError,
                                           "CYRILLIC SMALL LETTER A"),
    "a non-breaking hyphen": (lambda s, t: wb.Pipeline.parse("fold\u2011bn"), SpecError, "NON-BREAKING HYPHEN"),
    "a no-break space": (lambda s, t: wb.Pipeline.parse("fold-bn\u00a0+ prune(0.5)"), SpecError,
                         "NO-BREAK SPACE"),
    "a NUL byte in a spec": (lambda s, t: wb.Pipeline.parse("fold-bn\x00"), SpecError, "a NUL byte"),
    "a control character in a spec": (lambda s, t: wb.Pipeline.parse("fold-bn\x1b[0m"), SpecError, "character 8"),
    "a 100 kB spec": (lambda s, t: wb.Pipeline.parse("prune(" + "0" * 100_000 + ")"), SpecError,
                      "100,007 characters long"),
    "a 100 kB recipe name": (lambda s, t: wb.Pipeline.parse("x" * 100_000), SpecError, "100,000 characters"),
    "a quoted number": (lambda s, t: wb.Pipeline.parse("prune('0.5')"), ParameterError, "expected a number"),
    "a quoted unknown pattern": (lambda s, t: wb.Pipeline.parse('prune(0.5, pattern="3:4")'), ParameterError,
                                 "pattern"),
    "a unicode model name": (lambda s, t: wb.zoo.load("digits-cnn\u00e9"), UnknownNameError, "known zoo models"),
    "a path-like model name without data": (lambda s, t: wb.open_model("../../etc/passwd"), DataError,
                                            "needs data to be measured on"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_a_clear_error(case, study, cnn, tmp_path):
    fn, error, fragment = CASES[case]
    args = (study, cnn, tmp_path) if fn.__code__.co_argcount == 3 else (study, cnn)
    with pytest.raises(error) as info:
        fn(*args)
    assert fragment in str(info.value), str(info.value)


ROWS = {
    "a recipe that raises": ("test-explode", "failed", "kaboom"),
    "a recipe that breaks the outputs": ("test-nan", "failed", "NaN"),
    "a recipe the model cannot take": ("tf32", "unsupported", "runs on the CPU"),
    "scripting a quantized graph": ("int8-static(engine=qnnpack) + torchscript(mode=script)", None, None),
}


@pytest.mark.parametrize("case", sorted(ROWS))
def test_bad_trials_become_rows(case, study):
    from . import test_study  # noqa: F401  (registers test-explode and test-nan)

    spec, status, fragment = ROWS[case]
    row = study.trial(spec)
    if status is None:  # whatever happens, it is a row, never an exception
        assert row["status"] in ("ok", "failed", "unsupported")
        return
    assert row["status"] == status and fragment in row["error"]


CLI = {
    "bad parameter": (["run", "--recipes", "prune(2)"], "[0.0, 1.0)"),
    "unknown model": (["run", "--model", "nope", "--recipes", "fold-bn"], "known zoo models"),
    "unwritable output": (["run", "--recipes", "fold-bn", "--out", "{tmp}/file/r.csv"], "cannot write"),
    "negative batch": (["run", "--recipes", "fold-bn", "--batch-size", "-1"], "batch_size"),
    "zero threads": (["run", "--recipes", "fold-bn", "--threads", "0"], "threads"),
    "negative timeout": (["run", "--recipes", "fold-bn", "--executor", "process", "--timeout", "-1"],
                         "positive number"),
    "store is junk": (["run", "--recipes", "fold-bn", "--store", "{tmp}/junk.db"], "not a workbench results store"),
    "incompatible recipes": (["run", "--recipes", "fp16 + int8-static"], "one precision"),
    "app on an impossible port": (["app", "--port", "70000"], "between 0 and 65535"),
    "app on a port already in use": (["app", "--port", "{port}"], "is in use"),
    "app with no time for a trial": (["app", "--trial-timeout", "0"], "positive number"),
    "app with too little trial memory": (["app", "--trial-memory", "0.01"], "at least 256 MiB"),
    "a look-alike in --recipes": (["run", "--recipes", "fold\u2011bn"], "NON-BREAKING HYPHEN"),
}


@pytest.mark.parametrize("case", sorted(CLI))
def test_cli_bad_input_exits_2_with_one_clear_line(case, tmp_path):
    import socket

    (tmp_path / "file").write_text("x")
    (tmp_path / "junk.db").write_bytes(b"junk" * 100)
    args, fragment = CLI[case]
    extra = ["--no-progress"] if args[0] == "run" else []
    with socket.socket() as taken:  # a port another server holds
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "workbench", *[a.format(tmp=tmp_path, port=port) for a in args],
                               *extra], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stderr and "Traceback" not in proc.stderr


_FULL_DISK = """
import resource, signal, sys
import pandas as pd
import workbench as wb
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
row = {**dict.fromkeys(wb.COLUMNS), "pipeline": "fold-bn", "status": "ok", "is_baseline": False, "notes": "x" * 200}
frame = pd.DataFrame([row] * 200)
try:
    wb.Results(frame).save(sys.argv[1])
except wb.WorkbenchError as exc:
    print(exc)
"""


def test_a_full_disk_leaves_the_previous_file_and_no_half_written_one(tmp_path):
    target = tmp_path / "results.csv"
    target.write_text("previous results\n")
    proc = subprocess.run([sys.executable, "-c", _FULL_DISK, str(target)], capture_output=True, text=True,
                          timeout=300)
    assert "cannot write results" in proc.stdout and "File too large" in proc.stdout, (proc.stdout, proc.stderr)
    assert target.read_text() == "previous results\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"], "a temporary file was left behind"


def test_a_read_only_cache_folder_falls_back_to_a_temporary_one_with_a_warning(tmp_path, monkeypatch):
    from workbench import paths

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", "/sys/workbench-cache")
    with pytest.warns(UserWarning, match="cannot be written .* set WORKBENCH_CACHE_DIR"):
        folder = paths.cache_dir()
    assert folder != paths.Path("/sys/workbench-cache") and folder.is_dir()
    paths._writable.cache_clear()


ODD_BUT_VALID = {
    "a model with no parameters": "no parameters",
    "a model in train mode with dropout": "dropout",
    "a training checkpoint dict": "checkpoint",
}


class _NoParameters(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10]


@pytest.mark.parametrize("case", sorted(ODD_BUT_VALID))
def test_odd_but_valid_models_are_measured_or_answered_in_a_row(case, cnn, tmp_path):
    _, task = cnn
    if case == "a model with no parameters":
        study = wb.Study(_NoParameters(), task, timing=FAST, measure_memory=False)
        row = study.trial("int8-dynamic")
        assert row["status"] in ("unsupported", "ok"), row["error"]
        assert study.trial("baseline")["params"] == 0
    elif case == "a model in train mode with dropout":
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.Dropout(0.5), nn.Linear(64, 10)).train()
        study = wb.Study(net, task, timing=FAST, measure_memory=False)
        base = study.trial("baseline")
        assert not study.baseline.payload.training, "measured in eval mode: dropout off, outputs repeatable"
        assert base["fidelity"] == pytest.approx(1.0)
        x = task.sample(16)
        assert np.array_equal(study.baseline.predict(x), study.baseline.predict(x)), "dropout was left on"
    else:
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        path = tmp_path / "epoch3.ckpt.pt"
        torch.save({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}, "epoch": 3,
                    "optimizer_states": [{}]}, path)
        loaded = wb.load_model(path, architecture=nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
        assert torch.equal(loaded.payload[1].weight, net[1].weight)


def test_there_are_at_least_eighty_cases():
    assert len(CASES) + len(ROWS) + len(CLI) + len(ODD_BUT_VALID) + 2 >= 80
