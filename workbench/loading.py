"""Loading model files safely: nothing in a file runs code unless the caller says the file is trusted.

    wb.load_model("weights.safetensors", architecture=MyNet())   # tensors only, never code
    wb.load_model("weights.pt", architecture=MyNet())            # torch.load(weights_only=True)
    wb.load_model("weights.pt", architecture="my_pkg.nets:Net")  # the class by name (imported, built without arguments)
    wb.load_model("model.onnx")                                  # run in ONNX Runtime
    wb.load_model("model.tflite")                                # run in the LiteRT interpreter
    wb.load_model("model.keras")                                 # Keras safe mode: no Lambda code is deserialized
    wb.load_model("model.ts", trusted=True)                      # TorchScript archive: it is code, so opt in
    wb.load_model("program.pt2", trusted=True)                   # torch.export program: code too
    wb.load_model("whole_model.pt", trusted=True)                # a pickled nn.Module: runs code, so opt in

Paths are validated first: a regular file, not empty, under a size limit, of a known type.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

from ._optional import require
from .errors import DataError, ModelError, UnsafeModelError
from .model import ModelHandle

MAX_BYTES = 4 * 2**30
SUFFIXES = (".pt", ".pth", ".bin", ".ts", ".safetensors", ".pt2", ".onnx", ".keras", ".tflite")


def check_path(path: Any, *, max_bytes: int = MAX_BYTES, suffixes: tuple[str, ...] = SUFFIXES) -> Path:
    """A user-given model path: it must name a regular, non-empty file of a known type, under `max_bytes`."""
    if not isinstance(path, (str, os.PathLike)):
        raise DataError(f"a model path must be a string or path, got {type(path).__name__}")
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise DataError(f"unsupported model file type {p.suffix or '(no suffix)'!r} for {p.name!r}; "
                        f"expected one of {', '.join(suffixes)}")
    if not p.exists():
        raise DataError(f"no model file at {str(p)!r}")
    if not p.is_file():
        raise DataError(f"{str(p)!r} is not a regular file")
    size = p.stat().st_size
    if size == 0:
        raise DataError(f"model file {str(p)!r} is empty")
    if size > max_bytes:
        raise DataError(f"model file {str(p)!r} is {size / 2**30:.1f} GiB, over the {max_bytes / 2**30:.1f} GiB "
                        "limit; raise max_bytes if you mean it")
    return p


def load_model(path: Any, *, architecture: Any = None, example_input: Any = None, trusted: bool = False,
               max_bytes: int = MAX_BYTES) -> ModelHandle:
    """A model handle from a file, by its type. State dicts (.pt, .pth, .bin, .safetensors) need `architecture`:
    an nn.Module to load the weights into, or its class as "module:Class" / "path/to/file.py:Class"."""
    p = check_path(path, max_bytes=max_bytes)
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        return _onnx(p, example_input)
    if suffix == ".tflite":
        return _tflite(p, example_input)
    if suffix == ".keras":
        return _keras(p, example_input, trusted)
    torch = require("torch", "torch", "loading a torch model file")
    from .backends.torch import TorchModel

    if suffix == ".pt2":
        return TorchModel(_exported_program(torch, p, trusted), example_input, copy_module=False)
    if suffix == ".safetensors":
        state = _read_safetensors(p)
    elif _is_torchscript(p):
        _refuse_code(p, trusted, "a TorchScript archive is a program (its code runs when it is called)")
        try:
            return TorchModel(torch.jit.load(str(p), map_location="cpu"), example_input, copy_module=False)
        except Exception as exc:
            raise DataError(f"cannot load TorchScript archive {p.name!r}: {type(exc).__name__}: {exc}") from None
    else:
        state = _torch_load(torch, p, trusted)
    if isinstance(state, torch.nn.Module):
        return TorchModel(state, example_input, copy_module=False)
    state = _weights_of_checkpoint(torch, state, p)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{p.name!r} holds a {type(state).__name__}, not a state dict of tensors or a model")
    if architecture is None:
        raise ModelError(f"{p.name!r} holds weights only ({len(state)} tensors): pass architecture=YourModel() "
                         "(or --architecture my_pkg.nets:Net) to load them into")
    if isinstance(architecture, str):
        architecture = build_architecture(architecture)
    if not isinstance(architecture, torch.nn.Module):
        raise ModelError(f"architecture must be a torch.nn.Module, got {type(architecture).__name__}")
    state = _fit_prefix(state, set(architecture.state_dict()))
    try:
        result = architecture.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensors of the wrong shape
        raise ModelError(f"the weights in {p.name!r} do not fit the architecture: "
                         f"{str(exc).splitlines()[-1].strip()[:300]}") from None
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(f"the weights in {p.name!r} do not fit the architecture: missing "
                         f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
    return TorchModel(architecture, example_input)


def build_architecture(spec: str) -> Any:
    """An instance of the class named by "package.module:Class" or "path/to/file.py:Class", built without
    arguments. Modules are looked up from the current directory first (as `python -m` would)."""
    module_name, sep, class_name = spec.rpartition(":")
    if not sep or not module_name or not class_name.isidentifier():
        raise ModelError(f"--architecture {spec!r}: write module:Class (e.g. my_pkg.nets:Net) or file.py:Class")
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            if not file.is_file():
                raise ModelError(f"--architecture {spec!r}: no file {module_name!r}")
            loader_spec = importlib.util.spec_from_file_location(file.stem, file)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[file.stem] = module
            loader_spec.loader.exec_module(module)
            import cloudpickle

            # a worker process cannot import a file by its path: its classes travel by value
            cloudpickle.register_pickle_by_value(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"--architecture {spec!r}: cannot import {module_name!r} ({type(exc).__name__}: {exc}); "
                         "run from the directory that holds it or name its file (path/to/nets.py:Net)") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ModelError(f"--architecture {spec!r}: {module_name!r} has no {class_name!r}")
    try:
        return cls()
    except Exception as exc:
        raise ModelError(f"--architecture {spec!r}: {class_name}() failed ({type(exc).__name__}: {exc}); the class "
                         "must build with no arguments (give it defaults)") from None


def _refuse_code(p: Path, trusted: bool, why: str) -> None:
    if not trusted:
        raise UnsafeModelError(f"refused to load {p.name!r}: {why}. Only if you trust the file's source, pass "
                               "trusted=True (--trusted); or share weights as a state dict / safetensors")


def _onnx(p: Path, example_input: Any) -> ModelHandle:
    onnx = require("onnx", "onnx", "loading .onnx files")
    from .backends import load_backend

    try:
        model = onnx.load(str(p))
        onnx.checker.check_model(model)
    except Exception as exc:
        raise DataError(f"{p.name!r} is not a valid ONNX model ({type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[0][:200]})") from None
    return load_backend("onnx").OrtModel(model.SerializeToString(), example_input=example_input)


def _tflite(p: Path, example_input: Any) -> ModelHandle:
    data = p.read_bytes()
    if data[4:8] != b"TFL3":
        raise DataError(f"{p.name!r} is not a TFLite flatbuffer (no TFL3 identifier at byte 4)")
    from .backends import load_backend

    return load_backend("keras").LiteModel.from_file(data, example_input)


def _keras(p: Path, example_input: Any, trusted: bool) -> ModelHandle:
    from .backends import load_backend

    backend = load_backend("keras")
    keras = require("keras", "tf", "loading .keras files")
    if not zipfile.is_zipfile(p):
        raise DataError(f"{p.name!r} is not a Keras archive (a .keras file is a zip of config.json and weights)")
    try:
        model = keras.saving.load_model(str(p), compile=False, safe_mode=not trusted)
    except Exception as exc:
        message = str(exc)
        if "safe_mode" in message or "unsafe" in message.lower():
            raise UnsafeModelError(f"refused to load {p.name!r}: it holds Python code (a Lambda layer) that Keras' "
                                   "safe mode will not deserialize. Only if you trust the file's source, pass "
                                   "trusted=True (--trusted)") from None
        raise DataError(f"cannot load Keras model {p.name!r}: {type(exc).__name__}: "
                        f"{message.strip().splitlines()[0][:300]}") from None
    return backend.KerasModel(model, example_input)


def _exported_program(torch: Any, p: Path, trusted: bool) -> Any:
    _refuse_code(p, trusted, "a torch.export program holds a graph that runs when it is called")
    try:
        exported = torch.export.load(str(p)).module()
        # the exported module refuses .eval(); a plain GraphModule over the same graph and weights does not
        return torch.fx.GraphModule(exported, exported.graph)
    except Exception as exc:
        raise DataError(f"cannot load exported program {p.name!r}: {type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[0][:300]}") from None


def _read_safetensors(p: Path) -> dict:
    safetensors_torch = require("safetensors.torch", "torch", "loading .safetensors files")
    try:
        return safetensors_torch.load_file(str(p), device="cpu")
    except Exception as exc:
        raise DataError(f"{p.name!r} is not a valid safetensors file ({type(exc).__name__}: {exc})") from None


def _is_torchscript(p: Path) -> bool:
    if not zipfile.is_zipfile(p):
        return False
    with zipfile.ZipFile(p) as archive:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist())


#: where training scripts keep the model's weights in a checkpoint (Lightning, the PyTorch tutorials, timm, ...)
CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "net", "weights", "module")


def _weights_of_checkpoint(torch: Any, state: Any, p: Path) -> Any:
    """The state dict inside a training checkpoint ({"state_dict": ..., "epoch": ..., "optimizer": ...}); a
    state dict as it is. A dict of tensors under one of CHECKPOINT_KEYS is taken (a "model." or "module." prefix
    every key shares is dropped by `_fit_prefix` where the architecture's own keys lack it)."""
    if not isinstance(state, dict) or all(isinstance(v, torch.Tensor) for v in state.values()):
        return state
    for key in CHECKPOINT_KEYS:
        inner = state.get(key)
        if isinstance(inner, torch.nn.Module):
            return inner.state_dict()
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return inner
    found = ", ".join(repr(k) for k in list(state)[:8])
    raise DataError(f"{p.name!r} holds a dict with {found} but no model weights under any of "
                    f"{', '.join(CHECKPOINT_KEYS)}: save model.state_dict() itself, or the checkpoint's weights "
                    "under 'state_dict'")


def _fit_prefix(state: dict, own: set[str]) -> dict:
    """The keys as they are when they fit the architecture; else without a "model." / "module." prefix every key
    shares (Lightning's LightningModule.model, DataParallel's module), where that makes them fit."""
    if set(state) & own:
        return state
    for prefix in ("model.", "module."):
        if all(k.startswith(prefix) for k in state):
            stripped = {k[len(prefix):]: v for k, v in state.items()}
            if set(stripped) & own:
                return stripped
    return state


def _torch_load(torch: Any, p: Path, trusted: bool) -> Any:
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:
        message = str(exc)
        needs_code = [line.strip() for line in message.splitlines() if "GLOBAL" in line]
        if not needs_code:  # not a refusal to run code: the file is damaged or not a torch file
            detail = next((line.strip() for line in message.splitlines() if "Unsupported operand" in line
                           or "load key" in line), message.splitlines()[0][:200])
            raise DataError(f"cannot read model file {p.name!r}: {type(exc).__name__}: {detail}") from None
        if not trusted:
            offending = needs_code[0][:200]
            raise UnsafeModelError(
                f"refused to load {p.name!r}: unpickling it would execute code ({offending}). Save weights with "
                "model.state_dict() or safetensors; or, only if you trust the file's source, pass trusted=True"
            ) from None
    import warnings

    warnings.warn(f"loading {p.name!r} with trusted=True: its pickle may execute code", stacklevel=3)
    try:
        return torch.load(str(p), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise DataError(f"cannot read model file {p.name!r}: {type(exc).__name__}: {exc}") from None
