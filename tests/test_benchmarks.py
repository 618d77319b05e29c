"""The benchmark suite runs and prints its table (a smoke run: goals are judged by `make bench`, not here)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_benchmark_suite_prints_its_table(tmp_path):
    out = tmp_path / "bench.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--rounds", "2",
                           "--suite", "foundation", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    table = out.read_text()
    for fragment in ("int8-dynamic speed-up vs fp32", "size reduction", "torch.utils.benchmark", "device:"):
        assert fragment in table
