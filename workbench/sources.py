"""One way in for a model, whatever it is: a zoo name, or a model file with your data.

    handle, task = wb.open_model("digits-cnn")                                  # the zoo
    handle, task = wb.open_model("net.onnx", data="d.npz")                      # a file + data
    handle, task = wb.open_model("net.pt", data="images/", architecture="my_pkg.nets:Net")
    handle, task = wb.open_model("minilm-l6", data="data/stsbenchmark/sts-dev.csv")

The CLI (`--model --data --task --architecture --trusted`), the report and the dashboard all open models
through `open_model`, so a model file behaves the same in each.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import DataError


def is_model_file(model: Any) -> bool:
    """Whether `model` names a file (a path, or a string with a model file suffix or a path separator)."""
    from .loading import SUFFIXES

    if isinstance(model, os.PathLike):
        return True
    return isinstance(model, str) and (Path(model).suffix.lower() in SUFFIXES or os.sep in model)


def open_model(model: str | os.PathLike, *, data: str | os.PathLike | None = None, task: str | None = None,
               architecture: Any = None, trusted: bool = False, split: str = "val") -> tuple[Any, Any]:
    """(model handle, task) for a zoo name or a model file. `data` replaces the zoo's task, and a file needs it;
    `task` names its kind (classification, fidelity, sts) where the file's contents would not say;
    `architecture` and `trusted` are `load_model`'s. Inputs that do not fit the model raise DataError."""
    from . import zoo
    from .datafiles import check_fit, layout_for, load_data
    from .loading import load_model

    if data is not None and not Path(data).exists():  # before a model is trained or loaded
        load_data(data, task=task)
    if not is_model_file(model):
        handle, own = zoo.load(str(model), split=split)
        if data is None and task is None:
            return handle, own
        chosen = load_data(data, task=task, layout=layout_for(handle)) if data is not None else None
        if chosen is None:
            raise DataError(f"task={task!r} needs data=PATH (what to measure {model} on)")
        _check_kind(handle, chosen, str(model))
        check_fit(handle, chosen, source=Path(data).name)
        return handle, chosen
    if data is None:
        raise DataError(f"{Path(model).name}: a model file needs data to be measured on (--data PATH: an .npz of x "
                        "[and y], a folder of images by class, a CSV or an STS file)")
    handle = load_model(model, architecture=architecture, trusted=trusted)
    handle.name = Path(model).name
    chosen = load_data(data, task=task, layout=layout_for(handle))
    _check_kind(handle, chosen, Path(model).name)
    if handle.example_input is None:
        handle.example_input = chosen.sample(1)
    check_fit(handle, chosen, source=Path(data).name)
    return handle, chosen


DATA_SUFFIXES = (".npz", ".csv", ".tsv")


def page_source(model: Any, data: Any = None, task: str | None = None) -> tuple[Any, str | None]:
    """(data, task) a page (dashboard, report) measures `model` on: what was given, else the data people know the
    zoo model by (MiniLM: the STS Benchmark dev split), else None for the model's own task."""
    from . import zoo

    if data is not None or task is not None or is_model_file(model):
        return data, task
    return zoo.page_data(str(model)) or (None, None)


def model_choices(model: str | None = None, *, models_dir: str | os.PathLike | None = None, data: Any = None,
                  task: str | None = None, architecture: str | None = None, trusted: bool = False) -> dict[str, dict]:
    """What the dashboard's model chooser offers: label → `open_model` arguments. The model given first (a zoo
    name or a file with `data`), then the zoo, then every model file in `models_dir`, each with the data file of
    the same name beside it (net.onnx + net.npz / net.csv / a net/ folder of images), else `data`."""
    from . import zoo
    from .loading import SUFFIXES

    source = {"task": task, "architecture": architecture, "trusted": trusted}
    choices: dict[str, dict] = {}
    if model is not None and is_model_file(model):
        choices[Path(model).name] = {"model": str(model), "data": data, **source}
    for name in zoo.names():
        given = page_source(name, data, task) if name == model else page_source(name)
        choices[name] = {"model": name, "data": given[0], "task": given[1]}
    if models_dir is not None:
        folder = Path(models_dir)
        if not folder.is_dir():
            raise DataError(f"models folder {str(folder)!r} does not exist")
        for file in sorted(folder.iterdir()):
            if not file.is_file() or file.suffix.lower() not in SUFFIXES or file.name in choices:
                continue
            beside = [file.with_suffix(s) for s in DATA_SUFFIXES] + [file.with_suffix("")]
            found = next((str(p) for p in beside if p.exists() and p != file), None)
            choices[file.name] = {"model": str(file), "data": found or data, **source}
    return choices


def _check_kind(handle: Any, task: Any, name: str) -> None:
    from .text import TextTask

    text_model = hasattr(handle, "tokenizer")
    if isinstance(task, TextTask) and not text_model:
        raise DataError(f"{task.name} holds sentences, but {name} is not a text model (sentence encoders such as "
                        "minilm-l6 take sentences): give it numeric inputs (.npz, images, CSV)")
    if text_model and not isinstance(task, TextTask):
        raise DataError(f"{name} is a text model: give it sentences (an STS-format file), not {task.name}")


def check_holdout(holdout: Any) -> Any:
    """A holdout as given (a Task, "test" or None, a fraction, "sts:PATH", a data path), a fraction given as text
    made a float; anything else a DataError — checked before a model is loaded."""
    from .tasks import Task

    if holdout is None or holdout == "test" or isinstance(holdout, Task):
        return holdout
    if isinstance(holdout, (int, float)) and not isinstance(holdout, bool):
        return float(holdout)
    if isinstance(holdout, str):
        if holdout.startswith("sts:"):
            return holdout
        try:
            return float(holdout)
        except ValueError:
            if Path(holdout).exists():
                return holdout
    raise DataError(f"holdout {holdout!r} (--holdout): use test, a data path, sts:PATH or a fraction such as 0.5")


def with_holdout(model: Any, handle: Any, task: Any, *, data: Any = None, holdout: Any = None,
                 seed: int = 0) -> tuple[Any, Any]:
    """(the task a search selects on, the task its answer is confirmed on). `holdout`: a Task; "test" or None
    (a zoo model's test split where it has one of its own, else half of the task set apart); a fraction of the
    task to set apart; "sts:PATH"; or a data path (read like `data`)."""
    from . import zoo
    from .datafiles import layout_for, load_data
    from .tasks import Task

    holdout = check_holdout(holdout)
    if isinstance(holdout, Task):
        return task, holdout
    if isinstance(holdout, float):
        return task.split(holdout, seed=seed)
    if isinstance(holdout, str) and holdout.startswith("sts:"):
        return task, load_data(holdout[4:], task="sts")
    if isinstance(holdout, str) and holdout != "test":
        return task, load_data(holdout, layout=layout_for(handle))
    if not is_model_file(model) and data is None:
        _, test = zoo.load(str(model), split="test")
        if test.fingerprint() != task.fingerprint():
            return task, test
    return task.split(0.5, seed=seed)  # no test split of its own: half of the task is set apart
