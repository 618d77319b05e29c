"""Installed, not checked out: the wheel carries the notebooks, the Voila template and the panels, and `workbench
report` and `workbench app` work from any directory on a user's own model file and data.

The wheel is built from this checkout and installed (without dependencies) into a new virtual environment whose
dependencies are the test environment's, added behind it by a .pth file: the workbench itself comes only from the
wheel, and nothing of the checkout is on the path (the commands run from a temporary directory)."""

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import workbench as wb

from .own_net import user_package
from .test_app import ARGS, ARTIFACTS, CHROMIUM, _open

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of the new environment, its bin folder, a working folder outside the checkout)."""
    tmp = tmp_path_factory.mktemp("install")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp / "dist"), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp / "dist").glob("efficiency_workbench-*.whl"))
    env = tmp / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    python = env / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    work = tmp / "elsewhere"
    work.mkdir()
    return python, env / "bin", work


def _env(bin_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    # the dependencies' data files (nbconvert's and Voila's templates) are under their own prefix, not the new one
    env["JUPYTER_PATH"] = str(Path(sys.prefix) / "share" / "jupyter")
    return env


def test_the_wheel_holds_what_the_commands_need(installed):
    python, bin_dir, work = installed
    where = subprocess.run([str(python), "-c", "import workbench, workbench.widgets, workbench.app, workbench.report; "
                            "print(workbench.__file__); print(workbench.widgets.__file__); "
                            "print(workbench.app.DASHBOARD.is_file(), workbench.report.TEMPLATE.is_file(), "
                            "(workbench.app.TEMPLATES / 'voila/templates/workbench/index.html.j2').is_file())"],
                           cwd=work, env=_env(bin_dir), capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    package, panels, found = where.stdout.split("\n")[:3]
    env = str(bin_dir.parent)
    assert package.startswith(env) and panels.startswith(env), where.stdout  # the wheel's, not the checkout's
    assert found == "True True True"
    no_widgets = subprocess.run([str(python), "-c", "import widgets"], cwd=work, env=_env(bin_dir),
                                capture_output=True, text=True, timeout=60)
    assert no_widgets.returncode != 0  # no generically named top-level module in site-packages


def test_a_report_on_a_state_dict_from_another_directory(installed, cnn):
    python, bin_dir, work = installed
    _, task = cnn
    net = user_package(work, task)
    torch.save(net.state_dict(), work / "my_net.pt")
    np.savez(work / "d.npz", x=task.inputs, y=task.labels, x_train=task.train[0][:300], y_train=task.train[1][:300])
    proc = subprocess.run([str(bin_dir / "workbench"), "report", "--model", "my_net.pt", "--architecture",
                           "my_pkg.nets:Net", "--data", "d.npz", "--recipes", "int8-dynamic; prune(0.5)",
                           "--min-time", "0.05", "--out", "r.html"],
                          cwd=work, env=_env(bin_dir), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (work / "r.html").read_text()
    assert "Efficiency report: my_net.pt" in page and "This report is incomplete" not in page
    assert "d.npz: 359 samples, 10 classes" in page and "prune(0.5)" in page and "int8-dynamic" in page


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Chromium is not installed here: `make test` installs it")
def test_the_app_on_an_onnx_file_from_another_directory(installed, cnn, tmp_path):
    from playwright.sync_api import sync_playwright

    from workbench._net import free_port

    python, bin_dir, work = installed
    model, task = cnn
    models = work / "models"
    models.mkdir(exist_ok=True)
    (models / "cnn.onnx").write_bytes(wb.Study(model, task).handle("to-onnx").serialize())
    np.savez(models / "cnn.npz", x=task.inputs, y=task.labels)  # the data beside the model, by name
    shutil.copy(models / "cnn.onnx", models / "second.onnx")
    port = free_port()
    proc = subprocess.Popen([str(bin_dir / "workbench"), "app", "--model", "models/cnn.onnx", "--data",
                             "models/cnn.npz", "--models", "models", "--port", str(port)],
                            cwd=work, env=_env(bin_dir), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("Workbench dashboard: http://127.0.0.1:"), line
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(str(tmp_path / "chromium"), executable_path=CHROMIUM,
                                                           args=ARGS, headless=True,
                                                           viewport={"width": 1400, "height": 1100})
            page, outside, _ = _open(browser, line.split(": ", 1)[1].strip())
            text = page.inner_text("body")
            assert "cnn.npz (selection part" in text and "10 classes" in text  # the user's data, half held out
            options = page.locator("select option").all_inner_texts()
            assert {"cnn.onnx", "second.onnx", "digits-cnn"} <= set(options), options
            assert "history: what was measured before" in text
            page.get_by_text("history: what was measured before").click()
            page.wait_for_function("document.body.innerText.includes('measurement(s) of')", timeout=30_000)
            assert "Intel" in page.inner_text("body") or "AMD" in page.inner_text("body") or "cpu" in \
                page.inner_text("body").lower()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-own-model.png"), full_page=True)
            assert not outside
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        time.sleep(0.5)
