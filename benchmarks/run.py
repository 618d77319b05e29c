"""The performance suite: `python benchmarks/run.py [--quick] [--out table.md]`.

Prints one table of ratios measured in this run (interleaved rounds; median and IQR of the per-round
values) with the goal each ratio is held to. Speed goals live here, not in timed unit tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import workbench as wb  # noqa: E402
from benchmarks import app, foundation, isolation, layers, minilm, overhead, panel, recipes, search, tf_suite  # noqa: E402
from benchmarks.harness import format_table  # noqa: E402
from workbench.profiling import TimingConfig  # noqa: E402

SUITES = {"app": app.run, "foundation": foundation.run, "isolation": isolation.run, "layers": layers.run,
          "minilm": minilm.run, "overhead": overhead.run, "panel": panel.run, "recipes": recipes.run,
          "search": search.run, "tensorflow": tf_suite.run}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few short rounds (a smoke run, not for goals)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="default: all available cores")
    parser.add_argument("--suite", action="append", choices=sorted(SUITES), help="default: all")
    parser.add_argument("--out", default=None, help="also write the table (markdown) here")
    args = parser.parse_args(argv)

    device = wb.device()
    threads = args.threads or device.cores_available
    rounds = args.rounds or (3 if args.quick else 7)
    timing = TimingConfig(min_time_s=0.05 if args.quick else 0.3, min_runs=10 if args.quick else 30)
    rows = []
    for name in args.suite or sorted(SUITES):
        rows += SUITES[name](rounds=rounds, timing=timing, threads=threads)
    heading = (f"# Benchmarks {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC\n"
               f"device: {device.label}; ISA: {' '.join(device.isa)}; threads {threads}; rounds {rounds}; "
               f"quantized engine {device.recommended_quantized_engine}\n"
               f"versions: {', '.join(f'{k} {v}' for k, v in device.versions.items())}\n")
    table = format_table(rows)
    print(heading)
    print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(heading + "\n" + table + "\n")
    missed = [r.benchmark for r in rows if r.met is False]
    if missed and not args.quick:
        print(f"\n{len(missed)} goal(s) missed on this run", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
