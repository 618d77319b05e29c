"""Per-layer control: which of a model's layers an `exclude=` parameter names.

`exclude` takes glob patterns over layer names (torch module names, which ONNX nodes exported from torch keep as
their scope; Keras layer names). A pattern matches a layer or any layer inside it: `encoder.layer.5` and
`encoder.layer.5.*` both keep every layer of block 5 as it was. A pattern that matches none of the layers the
recipe acts on is an error that lists them, so a typo is never a silent no-op.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

from ..errors import ParameterError


def matches(name: str, pattern: str) -> bool:
    """Whether `pattern` names the layer `name` or a layer containing it (dotted module paths)."""
    parts = name.split(".")
    return any(fnmatchcase(".".join(parts[:i]), pattern) for i in range(len(parts), 0, -1))


def excluded_layers(recipe: str, patterns: Sequence[str], names: Iterable[str]) -> set[str]:
    """The names (of the layers `recipe` would change) that `patterns` exclude; every pattern must match one."""
    names = list(dict.fromkeys(names))
    chosen: set[str] = set()
    for pattern in patterns:
        hits = {n for n in names if matches(n, pattern)}
        if not hits:
            shown = ", ".join(names[:40]) + (f", … ({len(names)} in all)" if len(names) > 40 else "")
            raise ParameterError(recipe, "exclude", pattern,
                                 f"a glob matching a layer this recipe changes: {shown or 'it changes none'}")
        chosen |= hits
    return chosen
