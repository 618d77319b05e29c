"""A recipe = a frozen config dataclass + handlers registered per framework.

    @register_recipe
    @dataclass(frozen=True)
    class Prune(Recipe):
        name = "prune"; kind = "weights"; frameworks = ("torch",)
        sparsity: float = 0.5

    @register_handler(Prune, "torch")
    def _prune_torch(recipe, handle, context): ...   # returns a new handle

`recipe.apply(handle)` dispatches on `handle.framework`; the baseline handle is never mutated.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ParameterError, UnsupportedError
from ..registry import Registry

if TYPE_CHECKING:
    from ..model import ModelHandle
    from ..tasks import Task

#: what a recipe changes; also the order in which kinds may follow each other (see Recipe.conflicts_with)
KINDS = ("weights", "graph", "precision", "runtime", "target", "training")

RECIPES: Registry[type[Recipe]] = Registry("recipe")
TRAINING_RECIPES: Registry[type[Recipe]] = Registry("training recipe")
_HANDLERS: dict[tuple[type, str], Callable[..., Any]] = {}


@dataclasses.dataclass(frozen=True)
class ApplyContext:
    """What a handler may use besides the model: the task's data (calibration, fine-tuning) and the device."""

    task: Task | None = None
    device: Any = None  # a DeviceProfile, when the study has one
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Base of every recipe config. Subclasses are frozen dataclasses whose fields are the parameters."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    frameworks: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""
    #: parameters always written positionally in the canonical spec, e.g. prune(0.5)
    positional: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(self.name, f.name, getattr(self, f.name), f.type))
        self.validate()

    # -- to override ---------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ParameterError for out-of-range parameters (called on construction)."""

    def conflicts_with(self, earlier: Sequence[Recipe]) -> str | None:
        """Why this recipe cannot follow `earlier` steps of a pipeline, or None."""
        for prev in earlier:
            if self.kind == "training" and prev.name == self.name:
                return f"{self.name} appears twice; give it once"
            if self.kind == "precision" and prev.kind == "precision":
                return (f"{prev.to_spec()} already sets the precision; {self.to_spec()} would change it again. "
                        "Use one precision recipe per pipeline")
            if self.kind == "weights" and prev.kind in ("precision", "runtime"):
                return (f"{self.to_spec()} changes float weights, so it must come before {prev.to_spec()}; "
                        f"write it as '{self.to_spec()} + {prev.to_spec()}'")
            if self.kind == "graph" and prev.kind == "runtime":
                return (f"{self.to_spec()} rewrites the eager model, which {prev.to_spec()} has already turned into "
                        f"another runtime; write it as '{self.to_spec()} + {prev.to_spec()}'")
            if prev.kind == "target" and self.kind != "training":
                return f"{prev.to_spec()} checks the finished model for a target; put {self.to_spec()} before it"
            if self.kind == "runtime" and prev.kind == "runtime":
                return (f"{prev.to_spec()} and {self.to_spec()} are two runtimes; a pipeline ends in at most one")
        return None

    # -- behaviour -----------------------------------------------------------------------------
    def apply(self, handle: ModelHandle, context: ApplyContext | None = None) -> ModelHandle:
        """Return a new handle with this recipe applied; `handle` is left as it was."""
        from ..backends import load_backend

        if handle.framework not in self.frameworks:
            raise UnsupportedError(
                self.to_spec(),
                f"not available for {handle.framework} models (it supports: {', '.join(self.frameworks) or 'none yet'})",
            )
        load_backend(handle.framework)
        handler = _HANDLERS.get((type(self), handle.framework))
        if handler is None:
            raise UnsupportedError(self.to_spec(), f"no {handle.framework} handler is registered")
        return handler(self, handle, context or ApplyContext())

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.name, **self.params()}

    def to_spec(self) -> str:
        """Canonical spec: `positional` params always, the rest only where they differ from the default."""
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in self.positional:
                parts.append(_format_value(value))
            elif f.default is dataclasses.MISSING or value != f.default:
                parts.append(f"{f.name}={_format_value(value)}")
        return f"{self.name}({', '.join(parts)})" if parts else self.name

    def __str__(self) -> str:
        return self.to_spec()


def register_recipe(cls: type[Recipe]) -> type[Recipe]:
    """Class decorator: make a recipe findable by its spec name (training recipes have their own registry)."""
    if cls.kind not in KINDS:
        raise ValueError(f"recipe {cls.name!r}: kind must be one of {KINDS}, got {cls.kind!r}")
    (TRAINING_RECIPES if cls.kind == "training" else RECIPES).register(cls.name, cls)
    return cls


def register_handler(recipe_cls: type[Recipe], framework: str) -> Callable[[Callable], Callable]:
    """Decorator: `fn(recipe, handle, context) -> new handle` applies `recipe_cls` to `framework` models."""

    def deco(fn: Callable) -> Callable:
        _HANDLERS[(recipe_cls, framework)] = fn
        return fn

    return deco


def recipe_from_params(name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                       registry: Registry | None = None) -> Recipe:
    """Build a recipe from its name, positional and keyword parameters (as a spec gives them)."""
    cls = (registry or RECIPES).get(name)
    kwargs = dict(kwargs or {})
    fields = [f.name for f in dataclasses.fields(cls)]
    if len(args) > len(fields):
        raise ParameterError(name, "(positional)", tuple(args),
                             f"at most {len(fields)} positional value(s): {', '.join(fields) or 'none'}")
    for field_name, value in zip(fields, args):
        if field_name in kwargs:
            raise ParameterError(name, field_name, value, "a value given once, not both by position and by name")
        kwargs[field_name] = value
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise ParameterError(name, unknown[0], kwargs[unknown[0]],
                             f"one of the parameters of {name}: {', '.join(fields) or 'it takes none'}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required parameter is missing
        raise ParameterError(name, "(missing)", None, f"all required parameters ({exc})") from None


# -- parameter checks used by recipes' validate() ----------------------------------------------

def check_range(recipe: str, param: str, value: float, lo: float, hi: float,
                *, lo_open: bool = False, hi_open: bool = False) -> None:
    ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok or (isinstance(value, float) and math.isnan(value)):
        interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise ParameterError(recipe, param, value, f"a number in {interval}")


def check_choice(recipe: str, param: str, value: object, choices: Sequence[object]) -> None:
    if value not in choices:
        raise ParameterError(recipe, param, value, f"one of {', '.join(map(str, choices))}")


def _coerce(recipe: str, param: str, value: Any, annotation: Any) -> Any:
    kind = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    kind = kind.replace(" ", "")
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterError(recipe, param, value, "a number")
        return float(value)
    if kind == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParameterError(recipe, param, value, "a whole number")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ParameterError(recipe, param, value, "true or false")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ParameterError(recipe, param, value, "a word")
        return value
    return value


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value if _is_bare(value) else repr(value)
    return str(value)


def _is_bare(text: str) -> bool:
    """A string that the spec parser reads back as the same string without quotes."""
    if not text or not all(c.isalnum() or c in "-_.:" for c in text):
        return False
    from .pipeline import parse_value

    return parse_value(text) == text
