"""Loading model files safely: nothing in a file runs code unless the caller says the file is trusted.

    wb.load_model("weights.safetensors", architecture=MyNet())   # tensors only, never code
    wb.load_model("weights.pt", architecture=MyNet())            # torch.load(weights_only=True)
    wb.load_model("model.ts")                                    # TorchScript archive
    wb.load_model("whole_model.pt", trusted=True)                # a pickled nn.Module: runs code, so opt in

Paths are validated first: a regular file, not empty, under a size limit, of a known type.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from ._optional import require
from .errors import DataError, ModelError, UnsafeModelError
from .model import ModelHandle

MAX_BYTES = 4 * 2**30
SUFFIXES = (".pt", ".pth", ".bin", ".ts", ".safetensors")


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
    """A model handle from a file. State dicts need `architecture` (an nn.Module to load the weights into)."""
    p = check_path(path, max_bytes=max_bytes)
    torch = require("torch", "torch", "loading a torch model file")
    from .backends.torch import TorchModel

    if p.suffix.lower() == ".safetensors":
        state = _read_safetensors(p)
    elif _is_torchscript(p):
        try:
            return TorchModel(torch.jit.load(str(p), map_location="cpu"), example_input, copy_module=False)
        except Exception as exc:
            raise DataError(f"cannot load TorchScript archive {p.name!r}: {type(exc).__name__}: {exc}") from None
    else:
        state = _torch_load(torch, p, trusted)
    if isinstance(state, torch.nn.Module):
        return TorchModel(state, example_input, copy_module=False)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{p.name!r} holds a {type(state).__name__}, not a state dict of tensors or a model")
    if architecture is None:
        raise ModelError(f"{p.name!r} holds weights only ({len(state)} tensors): pass architecture=YourModel() "
                         "to load them into")
    if not isinstance(architecture, torch.nn.Module):
        raise ModelError(f"architecture must be a torch.nn.Module, got {type(architecture).__name__}")
    try:
        result = architecture.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensors of the wrong shape
        raise ModelError(f"the weights in {p.name!r} do not fit the architecture: "
                         f"{str(exc).splitlines()[-1].strip()[:300]}") from None
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(f"the weights in {p.name!r} do not fit the architecture: missing "
                         f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
    return TorchModel(architecture, example_input)


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
