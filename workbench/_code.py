"""Digests of code: what a class or function does, the same in every process (a trial's identity uses them)."""

from __future__ import annotations

import hashlib
import inspect
import re
import types
from typing import Any

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def without_addresses(text: str) -> str:
    """`<function f at 0x7f...>` → `<function f>`: object addresses differ from process to process."""
    return _ADDRESS.sub("", text)


def code_digest(obj: Any) -> str:
    """sha256 of a class's or function's code: its source where Python finds it, else (a class defined in a
    notebook cell or in __main__) the bytecode, constants and names of each of its functions."""
    h = hashlib.sha256(f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__name__)}".encode())
    try:
        h.update(inspect.getsource(obj).encode())
    except (OSError, TypeError):
        members = vars(obj).items() if isinstance(obj, type) else [("", obj)]
        for name, member in sorted(members, key=lambda item: item[0]):
            for fn in _functions(member):
                h.update(name.encode())
                _update_code(h, fn.__code__)
    return h.hexdigest()


def _functions(member: Any) -> list[types.FunctionType]:
    if isinstance(member, (staticmethod, classmethod)):
        member = member.__func__
    if isinstance(member, property):
        return [f for f in (member.fget, member.fset, member.fdel) if isinstance(f, types.FunctionType)]
    return [member] if isinstance(member, types.FunctionType) else []


def _update_code(h: Any, code: types.CodeType) -> None:
    h.update(code.co_code)
    h.update(repr((code.co_names, code.co_varnames)).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _update_code(h, const)
        else:
            h.update(without_addresses(repr(const)).encode())
