"""The `workbench` command: `workbench device [--json]`, `workbench run --model M --recipes "a; b" --out x.csv`
[--store results.db] [--executor inline|process|dask], `workbench search --model M --max-drop 0.5 --budget 10m
--store s.db --out r.csv`, `workbench report`, `workbench app`."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence

from .errors import WorkbenchError

EXIT_USER_ERROR = 2


def _model_args(parser: argparse.ArgumentParser) -> None:
    """--model (a zoo name or a model file), --data, --task, --architecture, --trusted: the same everywhere."""
    parser.add_argument("--model", default="digits-cnn",
                        help="a zoo model (see `workbench models`) or a model file: .onnx, .tflite, .keras, .pt / "
                             ".pth / .safetensors (with --architecture), TorchScript .ts or .pt2 (with --trusted)")
    parser.add_argument("--data", default=None,
                        help="what to measure on: .npz (x, optional y, x_train, y_train), a folder of images with one "
                             "sub-folder per class, a CSV with a label column, or an STS-format file")
    parser.add_argument("--task", default=None,
                        help="the kind of task when the data does not say: classification, fidelity or sts "
                             "(sts:PATH is --data PATH --task sts)")
    parser.add_argument("--architecture", default=None,
                        help="for weights-only files: the model class, module:Class or path/to/file.py:Class "
                             "(built without arguments)")
    parser.add_argument("--trusted", action="store_true",
                        help="allow model files that contain code (TorchScript, .pt2, pickled modules, Keras Lambda "
                             "layers): only for files from a source you trust")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("device", help="what this machine is and can do")
    dev.add_argument("--json", action="store_true", help="print the profile as JSON")
    dev.add_argument("--no-measure", action="store_true", help="skip the measured GEMM / bandwidth peaks")

    run = sub.add_parser("run", help="measure pipelines of recipes on a zoo model or a model file")
    _model_args(run)
    run.add_argument("--recipes", required=True,
                     help='pipelines separated by ";", e.g. "int8-dynamic; prune(0.5); fold-bn + int8-dynamic"')
    run.add_argument("--split", default="val", choices=("val", "test"), help="evaluation split of a zoo model")
    run.add_argument("--batch-size", type=int, default=32, help="batch that latency is timed at")
    run.add_argument("--threads", type=int, default=None, help="intra-op threads (default: cores available)")
    run.add_argument("--min-time", type=float, default=0.5, help="minimum seconds of timing per trial")
    run.add_argument("--out", default=None, help="write the results table (.csv or .parquet)")
    run.add_argument("--store", default=None,
                     help="SQLite results store: finished trials are kept there and skipped when run again "
                          "(default: a new store per run in the cache folder, named on stderr)")
    run.add_argument("--executor", default="inline", choices=("inline", "process", "dask"),
                     help="where trials run: in this process, each in its own process, or on a Dask cluster")
    run.add_argument("--timeout", type=float, default=600.0, help="seconds per trial (process and dask executors)")
    run.add_argument("--scheduler", default=None, help="Dask scheduler address (default: a local cluster)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    find = sub.add_parser("search", help="find the fastest (or smallest) configuration within an accuracy budget")
    _model_args(find)
    find.add_argument("--max-drop", type=float, default=1.0,
                      help="quality you accept to lose: points of accuracy, percent of the baseline's Spearman, or "
                           "points of fidelity for tasks without labels (default 1.0)")
    find.add_argument("--budget", default="10m", help="time for the search: seconds or e.g. 90s, 10m, 1h (default 10m)")
    find.add_argument("--objective", default="latency", choices=("latency", "size"))
    find.add_argument("--holdout", default=None,
                      help="what the answer is confirmed on, never selected on: 'test' (the zoo's test split, the "
                           "default; half of the data for a model file), a data path, sts:PATH, or a fraction of "
                           "the task to set apart (e.g. 0.5)")
    find.add_argument("--recipes", default=None, help='pipelines to try first, separated by ";"')
    find.add_argument("--space", default=None,
                      help='what to search over instead of the space built for the model and device: a JSON file or '
                           'JSON text, {"precision": [null, "int8-static"], "runtime": [null, "to-onnx"]}')
    find.add_argument("--batch-size", type=int, default=32)
    find.add_argument("--threads", type=int, default=None)
    find.add_argument("--min-time", type=float, default=0.3, help="minimum seconds of timing per trial")
    find.add_argument("--store", default=None, help="SQLite results store: a killed search resumes from it")
    find.add_argument("--out", default=None, help="write every trial with its verdict (.csv or .parquet)")
    find.add_argument("--allow-emulated", action="store_true", help="also try fp16/bf16 where this CPU emulates them")
    find.add_argument("--no-progress", action="store_true")

    rep = sub.add_parser("report", help="run the papermill report template and render standalone HTML")
    _model_args(rep)
    rep.add_argument("--recipes", required=True, help='pipelines separated by ";"')
    rep.add_argument("--split", default="val", choices=("val", "test"))
    rep.add_argument("--batch-size", type=int, default=32)
    rep.add_argument("--threads", type=int, default=0, help="0: all available cores")
    rep.add_argument("--min-time", type=float, default=0.3)
    rep.add_argument("--store", default=None, help="SQLite results store")
    rep.add_argument("--max-drop", type=float, default=1.0,
                     help="the recommendation loses at most this much quality (points of accuracy, %% of Spearman)")
    rep.add_argument("--objective", default="latency", choices=("latency", "size"))
    rep.add_argument("--search", default="0",
                     help="time to search beyond the listed pipelines, e.g. 2m (default 0: choose among them)")
    rep.add_argument("--out", required=True, help="the HTML file to write")
    rep.add_argument("--timeout", type=float, default=3600.0,
                     help="seconds a report cell may run before the report stops and says which one (default 3600)")
    rep.add_argument("--pdf", action="store_true", help="also print it to PDF beside the HTML (headless Chromium)")

    app = sub.add_parser("app", help="serve the dashboard (Voila), on 127.0.0.1 unless --host says otherwise")
    app.add_argument("--port", type=int, default=8866, help="port to serve on (0: any free port)")
    app.add_argument("--host", default="127.0.0.1",
                     help="address to bind (default 127.0.0.1, this machine only); any other needs a token")
    app.add_argument("--token", default=None,
                     help="the token pages must carry (?token=...); generated and printed when --host is not loopback")
    app.add_argument("--idle-timeout", type=int, default=300,
                     help="seconds after its page goes away that a session's kernel is shut down (0: never)")
    app.add_argument("--max-sessions", type=int, default=8,
                     help="sessions (kernels) at once; a page beyond is told to try again (0: no cap)")
    app.add_argument("--trial-timeout", type=float, default=300,
                     help="seconds a dashboard trial may run before it is killed and shown as a failed row")
    app.add_argument("--trial-memory", type=float, default=None, metavar="GB",
                     help="memory a session's trial worker may use before its trial is killed (GiB; default 80%% of "
                          "what this machine or its container allows)")
    _model_args(app)
    app.add_argument("--models", default=None,
                     help="a folder of model files to offer beside the zoo (each with a data file of the same name: "
                          "net.onnx + net.npz, or the --data given)")

    tgt = sub.add_parser("targets", help="deployment targets: what each takes, what is measured here, what is checked")
    tgt.add_argument("--check", default=None, metavar="MODEL.tflite",
                     help="check a converted model against every target (ops, tensor types, sizes)")
    tgt.add_argument("--json", action="store_true", help="print JSON")
    sub.add_parser("models", help="list the zoo models")
    sub.add_parser("recipes", help="list the recipes and their parameters")
    return parser


def _cmd_targets(args: argparse.Namespace) -> int:
    from . import targets

    frame = targets.table()
    if args.check is None:
        if args.json:
            print(frame.to_json(orient="records", indent=2))
        else:
            for row in frame.to_dict("records"):
                print(f"{row['target']}: {row['title']}\n  runs with      {row['runtime']}\n  precisions     "
                      f"{row['precisions']}\n  takes          {row['accepts']}\n  from here      {row['pipeline']}\n"
                      f"  measured here  {row['measured here']}\n  checked        {row['checked statically']}")
        return 0
    checks = targets.check(_absolute(args.check))
    if args.json:
        print(json.dumps([c.as_row() for c in checks], indent=2))
        return 0
    for c in checks:
        print(f"{c.target:<14} {c.verdict}")
        for finding in c.findings:
            print(f"{'':<15}{finding}")
    return 0


def _cmd_device(args: argparse.Namespace) -> int:
    from .profiling.device import device

    profile = device(measure=not args.no_measure)
    print(json.dumps(profile.to_dict(), indent=2) if args.json else profile.summary())
    return 0


#: per-run stores kept in the cache folder: the newest this many, and any younger than KEEP_RUN_DAYS
KEEP_RUNS, KEEP_RUN_DAYS = 20, 30


def _run_store_path():
    """Where `workbench run` keeps its rows when no --store is given: a store of its own in the cache folder (older
    ones beyond the newest KEEP_RUNS and past KEEP_RUN_DAYS are removed)."""
    import os
    import time

    from .paths import cache_dir

    folder = cache_dir() / "runs"
    prune_run_stores(folder)
    return folder / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.db"


def prune_run_stores(folder, keep: int = KEEP_RUNS, days: float = KEEP_RUN_DAYS) -> list:
    """Remove per-run stores (with their -wal / -shm files) beyond the newest `keep` that are older than `days`."""
    import time
    from pathlib import Path

    def age_of(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:
            return 0.0

    stores = sorted(Path(folder).glob("run-*.db"), key=age_of, reverse=True)
    cutoff = time.time() - days * 86400
    removed = []
    for store in stores[keep:]:
        if age_of(store) >= cutoff:
            continue
        for part in (store, Path(f"{store}-wal"), Path(f"{store}-shm")):
            try:
                part.unlink()
            except FileNotFoundError:
                pass
            except OSError:  # another process's open store, a permission: left for the next run
                break
        removed.append(store)
    return removed


def _cmd_run(args: argparse.Namespace) -> int:
    from .files import check_writable, write_table
    from .profiling.timing import TimingConfig
    from .recipes import parse_pipelines
    from .study import Study

    pipelines = parse_pipelines(args.recipes)  # a bad spec fails before the model is trained or loaded
    if args.out:
        check_writable(args.out)
    store = args.store or _run_store_path()
    executor = _executor(args)
    model, task = _open(args, split=args.split)
    study = Study(model, task, batch_size=args.batch_size, threads=args.threads,
                  timing=TimingConfig(min_time_s=args.min_time), store=store, executor=executor)
    print(f"{args.model} on {task.describe()}; batch {study.batch_size}, {study.threads} thread(s); "
          f"{study.device.label}", file=sys.stderr)
    if not args.store:
        print(f"rows are written to {store} as they finish: an interrupted run resumes with --store {store}",
              file=sys.stderr)
    total = len(dict.fromkeys(["", *(p.spec for p in pipelines)]))

    def kept(record) -> None:  # each finished row is in the store already; the output file follows it
        so_far = study.results()
        if args.out:
            write_table(so_far.frame, args.out)
        if args.no_progress:
            print(f"done [{len(so_far)}/{total}] {record.status} {record.pipeline or 'baseline'}",
                  file=sys.stderr, flush=True)

    try:
        results = study.run(pipelines, progress=not args.no_progress, on_record=kept)
    except KeyboardInterrupt:
        done = len(study.results())
        print(f"interrupted: the {done} finished row(s) are kept in {store}"
              + (f" and {args.out}" if args.out else "") + f"; run again with --store {store} to go on",
              file=sys.stderr)
        return 130
    finally:
        executor.close()
    print(results.table())
    for _, row in results.frame.iterrows():
        if row["status"] != "ok":
            print(f"[{row['status']}] {row['pipeline']}: {row['error']}", file=sys.stderr)
    if args.out:
        results.save(args.out)
        print(f"wrote {len(results)} rows to {args.out}", file=sys.stderr)
    return 0


def _data_args(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(data path, task kind) from --data / --task, where --task sts:PATH is --data PATH --task sts."""
    from .errors import DataError

    task, data = args.task, args.data
    if task and ":" in task:
        kind, _, path = task.partition(":")
        if kind != "sts" or not path:
            raise DataError(f"unknown --task {task!r}: use classification, fidelity, sts, or sts:PATH")
        if data:
            raise DataError("give the data once: --data PATH --task sts, or --task sts:PATH")
        return path, "sts"
    return data, task


def _open(args: argparse.Namespace, split: str = "val"):
    """(model handle, task) for --model / --data / --task / --architecture / --trusted; says what it opened."""
    from .sources import open_model

    data, kind = _data_args(args)
    handle, task = open_model(args.model, data=data, task=kind, architecture=args.architecture,
                              trusted=args.trusted, split=split)
    if data is not None:
        print(f"data: {data} → {task.describe()}", file=sys.stderr)
    return handle, task


def _search_tasks(args: argparse.Namespace, seed: int = 0):
    """(model handle, the task searched on, the held-out task) for `workbench search`."""
    from .sources import check_holdout, with_holdout

    holdout = check_holdout(args.holdout)  # a mistake fails before the model loads
    handle, task = _open(args)
    return (handle, *with_holdout(args.model, handle, task, data=_data_args(args)[0], holdout=holdout, seed=seed))


def _space(text: str):
    """--space: a JSON file or JSON text of dimension -> choices (null for nothing)."""
    from pathlib import Path

    from .errors import DataError
    from .recommend import Space

    source = Path(text).read_text(encoding="utf-8") if text.lower().endswith(".json") and Path(text).is_file() else text
    try:
        value = json.loads(source)
    except json.JSONDecodeError as exc:
        raise DataError(f"--space {text!r}: not a JSON file or JSON text ({exc.msg} at line {exc.lineno}); write "
                        '{"precision": [null, "int8-static"], "runtime": [null, "to-onnx"]}') from None
    return Space(value)


def _cmd_search(args: argparse.Namespace) -> int:
    from .files import check_writable
    from .profiling.timing import TimingConfig
    from .recipes import parse_pipelines
    from .recommend import check_request
    from .study import Study

    check_request(args.objective, args.max_drop, args.budget)  # every mistake before the model loads
    candidates = parse_pipelines(args.recipes) if args.recipes else []
    space = _space(args.space) if args.space else None
    if args.out:
        check_writable(args.out)
    handle, task, holdout = _search_tasks(args)
    study = Study(handle, task, batch_size=args.batch_size, threads=args.threads,
                  timing=TimingConfig(min_time_s=args.min_time), store=args.store)
    print(f"{args.model}: searching on {task.describe()}; held out: {holdout.describe()}; {study.device.label}",
          file=sys.stderr)
    try:
        found = study.search(holdout=holdout, objective=args.objective, max_drop=args.max_drop, budget_s=args.budget,
                             space=space, candidates=candidates, allow_emulated=args.allow_emulated,
                             progress=not args.no_progress)
    finally:
        study.close()
    print(found.tried().to_string(index=False, max_colwidth=70, float_format=lambda v: f"{v:.4g}"))
    front = found.front()
    print(f"\nfront ({found.objective} against the quality drop on {found.selection}): " + "; ".join(
        f"{r['pipeline']} ({r[found.column]:.4g}, drop {r['drop']:.2f})" for _, r in front.iterrows()))
    print()
    print(found.explanation)
    if args.out:
        found.save(args.out)
        print(f"wrote {len(found.frame)} rows to {args.out}", file=sys.stderr)
    return 0


def _executor(args: argparse.Namespace):
    from .executors import DaskExecutor, InlineExecutor, ProcessExecutor

    if args.executor == "process":
        return ProcessExecutor(timeout_s=args.timeout)
    if args.executor == "dask":
        return DaskExecutor(address=args.scheduler, timeout_s=args.timeout)
    return InlineExecutor()


def _cmd_report(args: argparse.Namespace) -> int:
    from .errors import DataError
    from .profiling.timing import TimingConfig
    from .recipes import parse_pipelines
    from .report import render

    # parameters are checked here, before a kernel starts: a mistake is one line, not a broken report
    if not args.timeout > 0:
        from .errors import ParameterError

        raise ParameterError("report", "--timeout", args.timeout, "a positive number of seconds per cell")
    parse_pipelines(args.recipes)
    _open(args, split=args.split)  # the model and its data: a file that does not load or fit fails here, in one line
    if args.batch_size < 1 or args.threads < 0:
        raise DataError(f"--batch-size must be >= 1 and --threads >= 0, got {args.batch_size} and {args.threads}")
    TimingConfig(min_time_s=args.min_time)
    from .recommend import check_request, parse_duration

    search_budget = 0.0 if args.search.strip() in ("0", "0s") else parse_duration(args.search, "--search")
    check_request(args.objective, args.max_drop, search_budget or 120)
    if not args.out.lower().endswith((".html", ".htm")):
        raise DataError(f"--out must name an .html file, got {args.out!r}")
    from pathlib import Path

    from .files import check_writable

    check_writable(Path(args.out).with_suffix(".csv"))
    from .sources import page_source

    data, kind = page_source(args.model, *_data_args(args))
    params = {"model": _absolute(args.model), "recipes": args.recipes, "data": _absolute(data), "task": kind,
              "architecture": args.architecture, "trusted": args.trusted, "split": args.split,
              "batch_size": args.batch_size, "threads": args.threads, "min_time": args.min_time, "store": args.store,
              "max_drop": args.max_drop, "objective": args.objective, "search_budget": search_budget}
    print(f"wrote {render(params, args.out, timeout_s=args.timeout)}")
    if args.pdf:
        from .report import to_pdf

        print(f"wrote {to_pdf(args.out, Path(args.out).with_suffix('.pdf'))}")
    return 0


def _absolute(path: str | None) -> str | None:
    """A path given on the command line, absolute (the report's and the app's kernels may run elsewhere); a zoo
    name as it is."""
    from pathlib import Path

    from .sources import is_model_file

    if path is None or (not is_model_file(path) and not Path(path).exists()):
        return path
    return str(Path(path).resolve())


def _cmd_app(args: argparse.Namespace) -> int:
    from .app import serve

    data, kind = _data_args(args)
    return serve(port=args.port, model=_absolute(args.model), data=_absolute(data), task=kind,
                 architecture=args.architecture, trusted=args.trusted, models_dir=_absolute(args.models),
                 host=args.host, token=args.token, idle_timeout=args.idle_timeout, max_sessions=args.max_sessions,
                 trial_timeout=args.trial_timeout, trial_memory_gb=args.trial_memory)


def _cmd_models(args: argparse.Namespace) -> int:
    from . import zoo

    print("\n".join(zoo.names()))
    return 0


def _cmd_recipes(args: argparse.Namespace) -> int:
    from .recipes import ALIASES, describe

    for r in describe():
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        print(f"{r['name']:<16} {r['kind']:<10} {','.join(r['formats']):<18} {r['summary']}"
              + (f"  [{params}]" if params else ""))
    print("\nold names (one more release): " + "; ".join(
        f"{a.name} → {a.target}{' after ' + a.after if a.after else ''}" for a in map(ALIASES.get, ALIASES)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = {"targets": _cmd_targets, "device": _cmd_device, "run": _cmd_run, "search": _cmd_search, "report": _cmd_report, "app": _cmd_app,
               "models": _cmd_models, "recipes": _cmd_recipes}[args.command]

    show = warnings.showwarning

    def one_line(message, category, *rest, **kwargs) -> None:  # an old recipe name: what it became, in one line
        if issubclass(category, FutureWarning) and str(message).startswith("recipe "):
            print(f"workbench {args.command}: note: {message}", file=sys.stderr)
        else:
            show(message, category, *rest, **kwargs)

    warnings.showwarning = one_line
    try:
        return handler(args)
    except WorkbenchError as exc:
        print(f"workbench {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
