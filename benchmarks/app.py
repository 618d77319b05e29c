"""The dashboard in headless Chromium: time from `workbench app` to an interactive page, and from a toggle
to the updated chart (new point drawn) in the browser."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workbench.profiling import TimingConfig

from .harness import Row, quantiles

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOGGLES = ["int8-dynamic", "int8-static", "bf16", "fp32", "int8-dynamic", "int8-static", "bf16", "fp32"]


def run(rounds: int, timing: TimingConfig, threads: int) -> list[Row]:
    chromium = shutil.which("chromium")
    if not chromium:
        return [Row("dashboard (needs Debian's chromium)", float("nan"), float("nan"), "s", 0, "", None,
                    "skipped: chromium is not installed (make test installs it)")]
    from playwright.sync_api import sync_playwright

    from workbench.app import free_port

    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "app", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = proc.stdout.readline().split(": ", 1)[1].strip()
        with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
            context = p.chromium.launch_persistent_context(profile, executable_path=chromium, args=ARGS,
                                                           headless=True)
            page = context.new_page()
            while True:
                try:
                    page.goto(url, timeout=60_000)
                    break
                except Exception:
                    time.sleep(0.3)
            page.wait_for_selector("text=showing", timeout=300_000)
            startup = time.perf_counter() - started
            fresh, cached = [], []
            seen = set()
            for name in TOGGLES:
                t = time.perf_counter()
                page.get_by_role("button", name=name).click()
                target = "baseline" if name == "fp32" else name
                page.wait_for_function(f"document.body.innerText.includes('showing {target}')", timeout=120_000)
                page.wait_for_function("document.querySelector('.mark-symbol path') !== null", timeout=30_000)
                (cached if target in seen or target == "baseline" else fresh).append(time.perf_counter() - t)
                seen.add(target)
            context.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    c_med, c_iqr = quantiles(cached)
    f_med, f_iqr = quantiles(fresh)
    return [
        Row("dashboard: `workbench app` -> interactive page (cold kernel)", startup, 0.0, "s", 1, "reported", None,
            "includes pre-warm (cached model, fresh baseline) and Voila's kernel start"),
        Row("dashboard: toggle -> updated chart in the browser (cached trial)", c_med, c_iqr, "s", len(cached),
            "reported", None, "digits-cnn, click to new text and chart"),
        Row("dashboard: toggle -> updated chart in the browser (new trial)", f_med, f_iqr, "s", len(fresh),
            "< 3 s", f_med < 3.0, "measured while the page waits"),
    ]
