"""Binder, proven: a fresh virtual environment built from binder/ the way repo2docker builds one — `pip install -r
binder/requirements.txt` from the repository root, then `binder/postBuild` — executes notebook 01.

Slow (a full install, minutes; pip's cache makes it faster after `make setup-dev`); CI runs it like every test.
Two things repo2docker does are left out because they prove nothing here and cost minutes: pip's bytecode
compilation (`--no-compile`: Python compiles what the notebook imports), and training the zoo models afresh
(postBuild loads them from the test session's cache, where the other tests trained them; tests/test_zoo.py
covers training)."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_binder_environment_runs_notebook_01(tmp_path):
    env_dir, home = tmp_path / "binder-env", tmp_path / "home"
    home.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300)
    bin_dir = env_dir / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", HOME=str(home))

    def run(*cmd, timeout):
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"{' '.join(map(str, cmd))}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        return proc

    run(str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-compile", "-r", "binder/requirements.txt", timeout=2400)
    run("bash", "binder/postBuild", timeout=1200)
    assert (home / ".ipython" / "profile_default" / "startup" / "00-workbench-offline.py").is_file()
    where = run("python", "-c", "import workbench, sys; print(sys.prefix); print(workbench.__file__)", timeout=120)
    prefix, package = where.stdout.split()[:2]
    assert Path(prefix) == env_dir and Path(package).is_relative_to(ROOT)  # the repository, installed editable
    executed = tmp_path / "01.ipynb"
    run("python", "-m", "papermill", "notebooks/01_quickstart.ipynb", str(executed), "--kernel", "python3",
        "--no-progress-bar", timeout=1200)
    notebook = nbformat.read(str(executed), as_version=4)
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert sum(1 for c in notebook.cells if c.cell_type == "code" and c.get("outputs")) >= 3
