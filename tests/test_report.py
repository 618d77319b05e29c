"""Papermill reports, for real: two parameter sets give two different, correct standalone HTML reports;
a failing cell still leaves a report that says where and why."""

import re
import subprocess
import sys

import pytest

import workbench as wb
from workbench.report import render

pytestmark = pytest.mark.slow


def _report(tmp_path, *args):
    out = tmp_path / "report.html"
    proc = subprocess.run([sys.executable, "-m", "workbench", "report", *args, "--min-time", "0.05", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    return proc, out


def _images(text):
    return re.findall(r'<img[^>]+src="data:image/svg\+xml;base64,', text)


def test_two_parameter_sets_give_two_correct_reports(tmp_path):
    cnn, cnn_out = _report(tmp_path / "a", "--model", "digits-cnn", "--recipes", "int8-static; prune(0.5)",
                           "--search", "20s", "--max-drop", "1")
    mlp, mlp_out = _report(tmp_path / "b", "--model", "digits-mlp", "--recipes", "int8-dynamic; fold-bn")
    assert cnn.returncode == 0, cnn.stderr
    assert mlp.returncode == 0, mlp.stderr
    a, b = cnn_out.read_text(), mlp_out.read_text()
    assert "Efficiency report: <code>digits-cnn</code>" in a and "digits-mlp" in b and "digits-mlp" not in a
    assert "int8-static" in a and "prune(0.5)" in a and "int8-dynamic" in b
    for text in (a, b):
        assert len(_images(text)) >= 3                       # trade-off, latency, size: embedded SVG
        assert not re.search(r'<script[^>]+src="https?://', text)  # nothing to fetch to see it
        assert "application/vnd.jupyter.stderr" not in text  # no library noise on the page
        assert "Conditions of measurement" in text and "The machine" in text and "Appendix" in text
        assert re.search(r"<h2[^>]*>Recommendation", text) and "Searched " in text
        # the headline first (before the chart, the table and the machine), and consistent with the table
        headline = re.search(r"<p class=.wb-headline.>(Ship [^<]+)</p>", text)
        assert headline and text.index(headline.group(0)) < text.index("Trade-off") < text.index("The machine")
        # a pipeline's name may hold spaces and commas of its own: "prune(0.5, pattern=channel) + to-onnx"
        shipped = (None if headline.group(1).startswith("Ship the original model")
                   else re.match(r"Ship (.+?): ([^,]+), ([^,]+), ", headline.group(1)))
        if shipped:  # a configuration: its row says recommended, with the same speed-up and size change
            pipeline, speed, size = shipped.groups()
            row = re.search(rf"<td>{re.escape(pipeline)}</td>\s*<td>recommended</td>(.*?)</tr>", text, re.S)
            assert row and f"<td>{speed}</td>" in row.group(1) and f"<td>{size}</td>" in row.group(1), headline
            assert "held-out data" in headline.group(1)
            assert f"Why: <code>{pipeline}</code>" in text and len(_images(text)) >= 4
        else:
            assert headline.group(1).startswith("Ship the original model") and "ship the baseline" in text
        # units for people in the key table; every column of every trial one click away (CSV) and in the appendix
        assert re.search(r"<td>[\d.]+ ms ± [\d.]+</td>", text) and re.search(r"<td>[\d.,]+ (B|KB|MB)</td>", text)
        assert "data:text/csv;base64," in text and "wb-appendix" in text
    # the search went beyond the listed pipelines (each recipe alone first), and chose on the validation split
    assert "each recipe alone" in a and "asked for" in a
    if "Ship int8-dynamic:" in b:  # the MLP's int8: its layer view with explanation, chart and table
        assert "Why: <code>int8-dynamic</code>, layer by layer" in b and "of the time" in b and len(_images(b)) >= 5
    # the MLP has no BatchNorm: fold-bn is a row that says so, and the report still renders
    assert "unsupported" in b and "no BatchNorm" in b


def test_a_failing_cell_leaves_a_report_that_says_where_and_why(tmp_path):
    out = tmp_path / "broken.html"
    with pytest.raises(wb.WorkbenchError, match="cell"):
        render({"model": "resnet-9000", "recipes": "int8-dynamic", "min_time": 0.05}, out)
    text = out.read_text()
    assert "This report is incomplete" in text and "UnknownNameError" in text and "resnet-9000" in text


@pytest.mark.parametrize("args, fragment", [
    (["--model", "nope", "--recipes", "fold-bn"], "known zoo models"),
    (["--recipes", "prune(7)"], "[0.0, 1.0)"),
    (["--recipes", "fold-bn", "--batch-size", "0"], "--batch-size"),
    (["--recipes", "fold-bn", "--task", "csv:data.csv"], "sts:PATH"),
    (["--recipes", "fold-bn", "--max-drop", "-2"], "max_drop"),
    (["--recipes", "fold-bn", "--search", "soon"], "--search"),
])
def test_bad_report_parameters_exit_2(tmp_path, args, fragment):
    proc = subprocess.run([sys.executable, "-m", "workbench", "report", *args, "--out", str(tmp_path / "r.html")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and fragment in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r.html").exists()


def test_report_output_must_be_html(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "workbench", "report", "--recipes", "fold-bn", "--out",
                           str(tmp_path / "r.pdf")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and ".html" in proc.stderr


@pytest.mark.browser
def test_a_report_reads_in_a_browser_and_prints_to_pdf(tmp_path):
    """The stakeholder's copy: the MLP report opened in headless Chromium (a screenshot for a reviewer) and as PDF."""
    import shutil

    from .test_app import ARTIFACTS

    if not shutil.which("chromium"):
        pytest.skip("Chromium is not installed here: `make test` installs it")
    proc, out = _report(tmp_path, "--model", "digits-mlp", "--recipes", "int8-dynamic", "--pdf")
    assert proc.returncode == 0, proc.stderr
    pdf = out.with_suffix(".pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 20_000
    ARTIFACTS.mkdir(exist_ok=True)
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'c'}",
                    f"--screenshot={ARTIFACTS / 'report.png'}", "--window-size=1200,2400", out.resolve().as_uri()],
                   capture_output=True, timeout=120, check=True)
    shutil.copy(pdf, ARTIFACTS / "report.pdf")
    assert (ARTIFACTS / "report.png").stat().st_size > 50_000


def _template(tmp_path, code: str):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    params = nbformat.v4.new_code_cell("model = ''")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("print('first cell ran')"), nbformat.v4.new_code_cell(code)]
    path = tmp_path / "template.ipynb"
    nbformat.write(nb, str(path))
    return path


@pytest.mark.parametrize("code, timeout, fragment", [
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 600, "the kernel died"),
    ("import time; time.sleep(120)", 5, "timeout of 5 s per cell"),
])
def test_a_dead_or_stuck_kernel_still_leaves_a_report_naming_the_cell(tmp_path, monkeypatch, code, timeout,
                                                                       fragment):
    import workbench.report

    monkeypatch.setattr(workbench.report, "TEMPLATE", _template(tmp_path, code))
    out = tmp_path / "r.html"
    with pytest.raises(wb.WorkbenchError, match="cell 3 of 3"):
        render({"model": "m"}, out, timeout_s=timeout)
    page = out.read_text()
    assert "This report is incomplete" in page and fragment in page and "cell 3 of 3" in page
    assert "first cell ran" in page  # what ran before is kept
