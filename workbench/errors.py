"""Every exception the workbench raises on purpose, in one place.

    WorkbenchError                 base: catch this to catch them all
    ├── SpecError                  a pipeline spec the parser cannot read (syntax)
    ├── UnknownNameError           a recipe / zoo model / task / runtime name nobody registered
    ├── ParameterError             a recipe parameter of the wrong type or out of its range
    ├── IncompatibleRecipesError   recipes that cannot be combined in one pipeline
    ├── UnsupportedError           a recipe that cannot apply to this model (becomes a row, status=unsupported)
    ├── ModelError                 not a model, or a model whose forward fails / gives NaN
    │   └── UnsafeModelError       a model file that would run code when loaded (refused unless trusted=True)
    ├── DataError                  empty, mismatched or non-finite data
    ├── MissingDependencyError     an optional extra is not installed (names the pip command)
    └── MeasurementError           a measurement that cannot be made honestly

User mistakes (spec, names, parameters, data) raise at once, before any trial runs. Failures inside a
trial become a result row with `status` and `error`, and the study goes on.
"""

from __future__ import annotations

from collections.abc import Iterable


class WorkbenchError(Exception):
    """Base class of every error the workbench raises on purpose."""


class SpecError(WorkbenchError, ValueError):
    """A pipeline spec that cannot be parsed."""

    def __init__(self, spec: str, problem: str, hint: str = ""):
        self.spec, self.problem, self.hint = spec, problem, hint
        shown = spec if len(spec) <= 200 else f"{spec[:80]}…({len(spec) - 160} more characters)…{spec[-80:]}"
        msg = f"cannot read pipeline spec {shown!r}: {problem}"
        super().__init__(msg + (f". {hint}" if hint else ""))


class UnknownNameError(WorkbenchError, LookupError):
    """A name that is not registered; the message lists the known ones."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        self.kind, self.name, self.known = kind, name, sorted(known)
        known_list = ", ".join(self.known) or "(none registered)"
        super().__init__(f"unknown {kind} {name!r}; known {kind}s: {known_list}")

    def __str__(self) -> str:  # LookupError would quote the message like a KeyError
        return self.args[0]


class ParameterError(WorkbenchError, ValueError):
    """A recipe parameter with a bad type or out of its valid range."""

    def __init__(self, recipe: str, param: str, value: object, expected: str):
        self.recipe, self.param, self.value, self.expected = recipe, param, value, expected
        super().__init__(f"{recipe}: parameter {param}={value!r} is invalid; expected {expected}")


class IncompatibleRecipesError(WorkbenchError, ValueError):
    """Recipes that cannot work together in one pipeline (said before anything runs)."""


class UnsupportedError(WorkbenchError):
    """A recipe that cannot apply to this model; the reason names the recipe and the model part."""

    def __init__(self, recipe: str, reason: str):
        self.recipe, self.reason = recipe, reason
        super().__init__(f"{recipe}: {reason}")


class ModelError(WorkbenchError, TypeError):
    """Not a model the workbench can wrap, or a model whose forward fails or gives NaN/Inf."""


class UnsafeModelError(ModelError):
    """A model file whose loading would execute code; refused unless the caller says it is trusted."""


class DataError(WorkbenchError, ValueError):
    """Empty, mismatched or non-finite data given to a task."""


class MissingDependencyError(WorkbenchError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str, purpose: str, install: str | None = None):
        self.module, self.extra = module, extra
        install = install or f"pip install 'efficiency-workbench[{extra}]' -c constraints.txt"
        super().__init__(f"{purpose} needs the Python package {module!r}, which is not installed. "
                         f"Install it with: {install}")


class MeasurementError(WorkbenchError, RuntimeError):
    """A measurement that cannot be made honestly (e.g. an invalid timing configuration)."""
