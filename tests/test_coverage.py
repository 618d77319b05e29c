"""What runs on what (issue 21): every recipe and the common two-recipe pipelines on the architectures people
bring (tests/architectures.py), each cell `ok` within the recipe's bounds or `unsupported` with a reason, never
`failed`, and the README's table ("What runs on what") is this run's (tests/coverage.py)."""

import math
import os
import re
from pathlib import Path

import pytest

from . import architectures, coverage

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- coverage:start -->", "<!-- coverage:end -->"


@pytest.fixture(scope="module")
def cells():
    return coverage.run_matrix()


def _where(cell: dict) -> str:
    return f"{cell['pipeline']} × {cell['framework']} {cell['architecture']}"


def test_no_cell_fails(cells):
    assert len(cells) == (len(architectures.TORCH_NAMES) * len(coverage.TORCH)
                          + len(architectures.KERAS_NAMES) * len(coverage.KERAS))
    failed = [f"{_where(c)}: {c['status']}: {c['reason']}" for c in cells if c["status"] not in ("ok", "unsupported")]
    assert not failed, "\n".join(failed)


def test_every_cell_that_runs_keeps_the_float_models_outputs(cells):
    short = []
    for cell in (c for c in cells if c["status"] == "ok"):
        cosine, least = cell["cosine"], coverage.bound(cell["pipeline"], cell["framework"])
        if cosine is None or not math.isfinite(cosine) or (least is not None and cosine < least):
            short.append(f"{_where(cell)}: cosine {cosine} < {least}")
    assert not short, "\n".join(short)


def test_every_unsupported_cell_says_which_step_and_why(cells):
    for cell in (c for c in cells if c["status"] == "unsupported"):
        steps = [step.strip().split("(")[0] for step in cell["pipeline"].split("+")]
        assert any(cell["reason"].startswith(step) for step in steps), _where(cell) + ": " + cell["reason"]
        assert len(cell["reason"]) > 40 and "\n" not in cell["reason"].strip(), _where(cell)


def _status(cells, framework, name, pipeline):
    return next(c for c in cells if c["framework"] == framework and c["architecture"] == name
                and c["pipeline"] == pipeline)


@pytest.mark.parametrize("framework, name, pipeline", [
    # the issue's own example: dynamic int8 through nn.MultiheadAttention and the encoder's fast path
    ("torch", "TransformerEncoder", "int8-dynamic"),
    ("torch", "TransformerEncoder (seq first)", "int8-dynamic"),
    ("torch", "TransformerEncoder", "prune(finetune=0) + int8-dynamic"),
    ("torch", "MultiheadAttention", "int8-dynamic"),
    # fine-tuning through attention, dict outputs and embeddings
    ("torch", "TransformerEncoder", "prune"),
    ("torch", "BERT (tiny config)", "prune"),
    ("torch", "BERT (tiny config)", "torchscript"),
    ("torch", "Embedding", "qat"),
    ("torch", "EmbeddingBag", "qat"),
    # Keras 3 recurrent layers and subclassed models through the TFLite converter
    ("keras", "LSTM", "tflite"),
    ("keras", "LSTM", "int8-static"),
    ("keras", "LSTM", "prune(finetune=0) + int8-dynamic"),
    ("keras", "subclassed model", "int8-dynamic"),
])
def test_the_technique_runs_where_it_applies(cells, framework, name, pipeline):
    cell = _status(cells, framework, name, pipeline)
    assert cell["status"] == "ok", cell["reason"]


def test_int8_dynamic_quantizes_attention_projections(cells):
    """Not a float model called int8: the attention's own projections are swapped too (fidelity below 1)."""
    cell = _status(cells, "torch", "MultiheadAttention", "int8-dynamic")
    assert cell["precision"] == "int8" and 0.95 <= cell["cosine"] < 0.99999


def test_the_readme_table_is_this_runs_table(cells, tmp_path_factory):
    machine = coverage.machine_key()
    generated = coverage.table(cells, machine)
    artifacts = Path(__file__).resolve().parents[1] / "artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "coverage.md").write_text(generated)
    text = README.read_text()
    assert START in text and END in text, "README.md has no coverage section (<!-- coverage:start/end -->)"
    head, rest = text.split(START, 1)
    section, tail = rest.split(END, 1)
    if os.environ.get("WORKBENCH_WRITE_README"):
        README.write_text(f"{head}{START}\n{generated}{END}{tail}")
        section = "\n" + generated
    recorded = re.search(r"on: (.*?) -->", section)
    if recorded is None or recorded.group(1) != machine:
        pytest.skip(f"the README's table was made on another kind of machine ({recorded and recorded.group(1)}); "
                    f"this one is {machine}: the cells above are checked, the table is in artifacts/coverage.md")
    assert section.strip() == generated.strip(), ("the README's table differs from this run's "
                                                  "(artifacts/coverage.md): `make coverage-table` rewrites it")
