"""`workbench report`: run notebooks/report.ipynb with papermill and render a standalone HTML report
(charts embedded as SVG: it opens offline). A failing cell still leaves a report that says where and why."""

from __future__ import annotations

import html
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._optional import require
from .errors import WorkbenchError

TEMPLATE = Path(__file__).resolve().parent / "notebooks" / "report.ipynb"
PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; }}
table {{ border-collapse: collapse; font-size: 0.85em; }} td, th {{ border: 1px solid #ccc; padding: 2px 6px; }}
pre {{ background: #f6f6f6; padding: 0.6em; overflow-x: auto; white-space: pre-wrap; }}
.wb-error {{ border: 2px solid #b00; padding: 0.6em 1em; background: #fff4f4; }}
.wb-headline {{ font-size: 1.25em; font-weight: 600; border-left: 4px solid #1a7f37; padding: 0.4em 0.8em;
background: #f3faf5; }}
.wb-appendix table {{ table-layout: fixed; width: 100%; font-size: 0.7em; }}
.wb-appendix td, .wb-appendix th {{ word-break: break-word; overflow-wrap: anywhere; }}
.jp-OutputArea-output {{ overflow-x: auto; }} table {{ max-width: 100%; }}
@media print {{ body {{ max-width: none; }} .jp-OutputArea-output {{ overflow-x: visible; }} }}</style></head>
<body>{error}{body}</body></html>"""


def to_pdf(page: str | Path, pdf: str | Path, *, timeout_s: float = 180) -> Path:
    """Print a rendered HTML report to PDF with headless Chromium (the browser the tests already use)."""
    import shutil
    import subprocess

    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
                   None)
    if browser is None:
        raise WorkbenchError("a PDF is printed by headless Chromium, which is not installed: apt-get install chromium "
                             "(the HTML report is written all the same)")
    pdf = Path(pdf).resolve()
    with tempfile.TemporaryDirectory(prefix="wb-pdf-") as profile:
        proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                               f"--user-data-dir={profile}", "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
                               Path(page).resolve().as_uri()], capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0 or not pdf.is_file() or pdf.stat().st_size == 0:
        raise WorkbenchError(f"Chromium could not print {page} to PDF: {proc.stderr.strip()[-300:]}")
    return pdf


def _stopped_cell(path: Path) -> str:
    """Which cell (of the template's) was running when the kernel died or timed out."""
    import nbformat

    try:
        notebook = nbformat.read(str(path), as_version=4)
    except Exception:  # nothing was written before the kernel went
        return "before the first cell finished"
    code = [c for c in notebook.cells if c.cell_type == "code"
            and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    started = [n for n, c in enumerate(code, 1) if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    # papermill marks every cell complete on the way out: the one that stopped it is the last that started
    return f"cell {started[-1]} of {len(code)}" if started else "before the first cell ran"


def render(parameters: dict[str, Any], out: str | Path, *, timeout_s: float | None = 3600) -> Path:
    """Execute the template with `parameters` and write HTML to `out` (atomically). Raises WorkbenchError after
    writing the report when a cell failed, ran past `timeout_s`, or the kernel died (a crash, the OOM killer):
    the report shows what ran and says which cell stopped it and why."""
    papermill = require("papermill", "report", "reports")
    nbconvert = require("nbconvert", "report", "reports")
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from .files import atomic_write_text

    if not TEMPLATE.is_file():
        raise WorkbenchError(f"the report template is not at {TEMPLATE}: reinstall efficiency-workbench[report]")
    out = Path(out)
    failure = None
    with tempfile.TemporaryDirectory(prefix="wb-report-") as tmp:
        executed = Path(tmp) / "report.ipynb"
        try:
            papermill.execute_notebook(str(TEMPLATE), str(executed), parameters=parameters, progress_bar=False,
                                       cwd=str(Path.cwd()), kernel_name="python3", execution_timeout=timeout_s)
        except papermill.PapermillExecutionError as exc:
            failure = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
        except DeadKernelError as exc:
            failure = (f"{_stopped_cell(executed)}: the kernel died ({exc}) — a crash in native code or the "
                       "machine running out of memory; try fewer recipes or a smaller batch")
        except CellTimeoutError:
            failure = (f"{_stopped_cell(executed)}: it ran past the report's timeout of {timeout_s:g} s per cell "
                       "(--timeout)")
        try:
            notebook = nbformat.read(str(executed), as_version=4)
        except (OSError, ValueError):
            notebook = nbformat.v4.new_notebook()
    exporter = nbconvert.HTMLExporter(template_name="basic", exclude_input=True, exclude_input_prompt=True,
                                      exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(notebook)
    error = (f"<div class='wb-error'><b>This report is incomplete.</b> {html.escape(failure)}</div>"
             if failure else "")
    title = html.escape(f"Efficiency report: {Path(str(parameters.get('model', ''))).name}")
    atomic_write_text(out, PAGE.format(title=title, error=error, body=body))
    if failure:
        print(f"report written to {out}, but a cell failed: {failure}", file=sys.stderr)
        raise WorkbenchError(f"the report ran into an error in {failure}; {out} shows where")
    return out
