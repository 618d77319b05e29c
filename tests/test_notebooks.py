"""Every exploratory notebook runs end to end with papermill (its last cells assert its claims); notebooks are
stored without outputs; Binder's environment stays in step with pyproject."""

import json
import re
from pathlib import Path

import nbformat
import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.ipynb"))
#: papermill parameters for the suite: the search notebook's claims hold on half its default budget (each of its
#: two searches spends the whole budget; 92 s instead of 147 s here), and tests/test_search.py covers the search
PARAMETERS = {"07_search": {"budget_s": 30}}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_its_claims_hold(path, tmp_path):
    import papermill

    out = tmp_path / path.name
    papermill.execute_notebook(str(path), str(out), cwd=str(path.parent), kernel_name="python3",
                               parameters=PARAMETERS.get(path.stem, {}), progress_bar=False)
    executed = nbformat.read(str(out), as_version=4)
    text = json.dumps([c.get("outputs", []) for c in executed.cells])
    assert "claims hold" in text


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebooks_are_stored_without_outputs(path):
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name


def test_there_is_a_parameters_cell_where_papermill_needs_one():
    for name in ("report.ipynb", "04_transformer_int8_onnxruntime.ipynb"):
        nb = nbformat.read(str(ROOT / "notebooks" / name), as_version=4)
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), name


def test_binder_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [line.strip() for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert "-c ../constraints.txt" in lines
    extras = re.search(r"-e \.\[([^\]]+)\]", " ".join(lines)).group(1).split(",")  # from the repository root
    assert set(extras) <= set(project["optional-dependencies"])
    assert {"torch", "charts", "app", "report"} <= set(extras)
    postbuild = ROOT / "binder" / "postBuild"
    assert postbuild.stat().st_mode & 0o111, "postBuild must be executable"
    assert "use_offline_renderer" in postbuild.read_text() and "zoo.load" in postbuild.read_text()
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    minimum = project["requires-python"].removeprefix(">=")
    assert tuple(map(int, runtime.removeprefix("python-").split("."))) >= tuple(map(int, minimum.split(".")))
