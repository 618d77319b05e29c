"""Your own data from a file: `wb.load_data(path)` → a Task, its kind inferred from what the file holds.

    wb.load_data("d.npz")          x (inputs), optional y (labels), optional x_train / y_train (calibration,
                                   fine-tuning); labels make it a classification task, else fidelity only
    wb.load_data("images/")        a folder with one sub-folder of images per class (or train/ and val/ folders
                                   of such sub-folders); pixels scaled to [0, 1]
    wb.load_data("table.csv")      numeric columns; a `label` (or y, target, class) column holds the classes and
                                   an optional `split` column marks rows train / val
    wb.load_data("sts-dev.csv")    an STS-format file (tab-separated, score in column 5): Spearman, text models

`task=` names the kind instead ("classification", "fidelity", "sts"). Every mistake is a DataError that says
what was expected.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

KINDS = ("classification", "fidelity", "sts")
INPUT_KEYS = ("x", "inputs", "x_val", "x_test")
LABEL_KEYS = ("y", "labels", "y_val", "y_test")
LABEL_COLUMNS = ("label", "labels", "y", "target", "class")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
ACCEPTED = ".npz (x, y, x_train, y_train), a folder of images with one sub-folder per class, a .csv table, or an " \
           "STS-format file"


def load_data(path: Any, *, task: str | None = None, layout: str = "nchw") -> Any:
    """A Task from a data file or folder. `layout` ("nchw" or "nhwc") is how images are laid out for the model
    (channels first for torch and most ONNX models, last for Keras and TFLite)."""
    from .tasks import Classification, Unlabelled

    if task is not None and task not in KINDS:
        raise DataError(f"unknown task {task!r}: use one of {', '.join(KINDS)}")
    if layout not in ("nchw", "nhwc"):
        raise DataError(f"layout must be 'nchw' or 'nhwc', got {layout!r}")
    if not isinstance(path, (str, os.PathLike)):
        raise DataError(f"a data path must be a string or path, got {type(path).__name__}")
    p = Path(path)
    if not p.exists():
        raise DataError(f"no STS file at {str(p)!r}" if task == "sts" else f"no data at {str(p)!r}: expected {ACCEPTED}")
    if task == "sts" or (task is None and p.is_file() and _looks_like_sts(p)):
        from .text import STS

        return STS(p)
    if p.is_dir():
        x, y, train = _image_folder(p, layout)
    elif p.suffix.lower() == ".npz":
        x, y, train = _npz(p)
    elif p.suffix.lower() in (".csv", ".tsv", ".txt"):
        x, y, train = _table(p)
    else:
        raise DataError(f"unsupported data file type {p.suffix or '(no suffix)'!r} for {p.name!r}: expected {ACCEPTED}")
    name = p.name
    if task == "fidelity" or (task is None and y is None):
        return Unlabelled(x, name=f"{name} (no labels: fidelity only)")
    if y is None:
        raise DataError(f"{p.name!r} holds no labels, so it cannot be a classification task: add labels (y in an "
                        f".npz, a label column in a CSV) or use task='fidelity'")
    return Classification(x, y, train=train, name=name)


def _looks_like_sts(p: Path) -> bool:
    """Tab-separated lines of 7+ fields whose fifth is a score: the STS Benchmark's layout."""
    if p.suffix.lower() not in (".csv", ".tsv", ".txt"):
        return False
    with open(p, encoding="utf-8", errors="replace") as fh:
        first = fh.readline().rstrip("\r\n").split("\t")
    if len(first) < 7:
        return False
    try:
        return 0.0 <= float(first[4]) <= 5.0
    except ValueError:
        return False


def _npz(p: Path) -> tuple[np.ndarray, np.ndarray | None, tuple | None]:
    try:
        with np.load(p, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except ValueError as exc:  # object arrays need pickle: refused, it could run code
        raise DataError(f"{p.name!r}: {exc}; save numeric arrays only (np.savez(path, x=..., y=...))") from None
    except Exception as exc:
        raise DataError(f"{p.name!r} is not a readable .npz archive ({type(exc).__name__}: {exc})") from None
    x_key = next((k for k in INPUT_KEYS if k in arrays), None)
    if x_key is None:
        raise DataError(f"{p.name!r} holds {sorted(arrays) or 'no arrays'}; expected the inputs under 'x' (and "
                        "optionally labels 'y', training data 'x_train' / 'y_train')")
    y_key = next((k for k in LABEL_KEYS if k in arrays), None)
    train = None
    if "x_train" in arrays:
        if "y_train" not in arrays:
            raise DataError(f"{p.name!r} has x_train without y_train: add the training labels or drop x_train")
        train = (arrays["x_train"], arrays["y_train"])
    return arrays[x_key], arrays.get(y_key) if y_key else None, train


def _table(p: Path) -> tuple[np.ndarray, np.ndarray | None, tuple | None]:
    delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
    with open(p, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter=delimiter))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if len(rows) < 2:
        raise DataError(f"{p.name!r} needs a header row and at least one row of numbers")
    header = [h.strip() for h in rows[0]]
    lowered = [h.lower() for h in header]
    label = next((lowered.index(c) for c in LABEL_COLUMNS if c in lowered), None)
    split = lowered.index("split") if "split" in lowered else None
    features = [i for i in range(len(header)) if i not in (label, split)]
    if not features:
        raise DataError(f"{p.name!r} has no feature columns besides {header}")
    values, labels, splits = [], [], []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{p.name!r} line {number}: {len(row)} fields, the header has {len(header)}")
        try:
            values.append([float(row[i]) for i in features])
            if label is not None:
                labels.append(float(row[label]))
        except ValueError as exc:
            raise DataError(f"{p.name!r} line {number}: {exc}; every column but label and split must be a "
                            "number") from None
        if split is not None:
            splits.append(row[split].strip().lower())
    x = np.asarray(values, dtype=np.float32)
    y = np.asarray(labels) if label is not None else None
    if split is None:
        return x, y, None
    kinds = np.asarray(splits)
    unknown = set(kinds) - {"train", "val", "test", "eval"}
    if unknown:
        raise DataError(f"{p.name!r}: split column values {sorted(unknown)}: use train, val or test")
    evaluate, fit = kinds != "train", kinds == "train"
    if not evaluate.any():
        raise DataError(f"{p.name!r}: every row is split=train; mark some rows val (what is measured)")
    train = (x[fit], y[fit]) if fit.any() and y is not None else None
    return x[evaluate], (y[evaluate] if y is not None else None), train


def _image_folder(p: Path, layout: str) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    subdirs = sorted(d.name for d in p.iterdir() if d.is_dir())
    if "train" in subdirs and ({"val", "test"} & set(subdirs)):
        evaluation = p / ("val" if "val" in subdirs else "test")
        classes = sorted(d.name for d in evaluation.iterdir() if d.is_dir())
        x, y = _images(evaluation, classes, layout)
        train = _images(p / "train", classes, layout, shape=x.shape[1:])
        return x, y, train
    return (*_images(p, subdirs, layout), None)


def _images(folder: Path, classes: list[str], layout: str, shape: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    from ._optional import require

    image_lib = require("PIL.Image", "images", "reading a folder of images")
    if not classes:
        raise DataError(f"{str(folder)!r} has no class sub-folders: put each class's images in a folder named "
                        "after it (images/cat/1.png, images/dog/2.png)")
    xs, ys = [], []
    for index, name in enumerate(classes):
        files = sorted(f for f in (folder / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        for file in files:
            try:
                with image_lib.open(file) as image:
                    mode = image.mode if image.mode in ("L", "RGB") else "RGB"
                    array = np.asarray(image.convert(mode), dtype=np.float32) / 255.0
            except Exception as exc:
                raise DataError(f"cannot read image {str(file)!r} ({type(exc).__name__}: {exc})") from None
            array = array[..., None] if array.ndim == 2 else array  # H, W, C
            array = array.transpose(2, 0, 1) if layout == "nchw" else array
            if shape is not None and array.shape != shape:
                raise DataError(f"image {str(file)!r} is {array.shape} ({layout}), the others are {shape}: resize "
                                "every image to one size first")
            shape = array.shape
            xs.append(array)
            ys.append(index)
    if not xs:
        raise DataError(f"{str(folder)!r}: no images ({', '.join(IMAGE_SUFFIXES)}) in its class sub-folders")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def check_fit(handle: Any, task: Any, source: str = "the data") -> None:
    """Run the model on two samples of the task: inputs of a shape or type it cannot take, or outputs that the
    labels do not match, become one DataError saying what was expected."""
    from .errors import WorkbenchError

    sample = task.sample(2)
    expected = _expected_inputs(handle)
    try:
        outputs = handle.predict(sample)
    except WorkbenchError:
        raise
    except Exception as exc:
        shape = tuple(getattr(sample, "shape", ()))
        got = f"{sample.dtype} {shape}" if hasattr(sample, "dtype") else f"{type(sample).__name__} of {len(sample)}"
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        telling = [line for line in lines if any(w in line.lower() for w in ("shape", "dimension", "expected"))]
        detail = re.sub(r"\x1b\[[0-9;]*m", "", (telling or lines or [type(exc).__name__])[0])[:160]
        hint = ""
        if len(shape) == 4 and shape[1] in (1, 3, 4) and shape[3] not in (1, 3, 4):
            hint = "; if the model takes channels last, transpose: x.transpose(0, 2, 3, 1)"
        elif len(shape) == 4 and shape[3] in (1, 3, 4):
            hint = "; if the model takes channels first, transpose: x.transpose(0, 3, 1, 2)"
        raise DataError(f"{source} does not fit the model: inputs {got}"
                        + (f", the model takes {expected}" if expected else "") + f"{hint} ({detail})") from None
    labels = getattr(task, "num_classes", None)
    if labels is not None:
        outputs = np.asarray(outputs)
        if outputs.ndim != 2:
            raise DataError(f"{source} has class labels but the model's outputs have shape {outputs.shape}: a "
                            "classifier gives (batch, classes); use task='fidelity' to compare outputs only")
        if outputs.shape[1] < labels:
            raise DataError(f"{source} has labels up to {labels - 1} but the model gives {outputs.shape[1]} class "
                            "scores per sample: the labels do not match the model's outputs")


def _declared_input(handle: Any) -> tuple[str, list] | None:
    """(dtype, shape) of the model's first input as its format declares it (None where it does not say)."""
    try:
        if handle.format == "onnx":
            first = handle._session().get_inputs()[0]
            return first.type, list(first.shape)
        if handle.format == "tflite":
            detail = handle.io[0]
            return np.dtype(detail["dtype"]).name, list(detail["shape_signature"])
        if handle.format == "keras":
            return str(handle.payload.inputs[0].dtype), list(handle.payload.inputs[0].shape)
    except Exception:
        return None
    return None


def _expected_inputs(handle: Any) -> str | None:
    """What the model declares it takes, as 'float32 [None, 8, 8, 1]'."""
    declared = _declared_input(handle)
    return f"{declared[0]} {declared[1]}" if declared else None


def layout_for(handle: Any) -> str:
    """Channels first or last for images fed to this model: what its declared 4-D input says (a last axis of 1, 3
    or 4 channels: last), else its format's convention (Keras and TFLite channels last)."""
    declared = _declared_input(handle)
    if declared is not None and len(declared[1]) == 4:
        return "nhwc" if declared[1][3] in (1, 3, 4) else "nchw"
    return "nhwc" if handle.format in ("keras", "tflite") else "nchw"
