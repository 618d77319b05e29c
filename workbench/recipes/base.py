"""A recipe = a frozen config dataclass + one handler per model format it applies to.

    @register_recipe
    @dataclass(frozen=True)
    class Prune(Recipe):
        name = "prune"; kind = "weights"; formats = ("torch", "keras")
        sparsity: float = 0.5

    @register_handler(Prune, "torch")
    def _prune_torch(recipe, handle, context): ...   # returns a new handle

`recipe.apply(handle)` dispatches on `handle.format` (torch, torchscript, executorch, onnx, keras, tflite), so
one technique has one name whatever runs it: `int8-dynamic` on an ONNX model is ONNX Runtime's dynamic
quantization, on a Keras model TFLite's dynamic-range conversion. `apply` appends the recipe to the new
handle's lineage; the handle it was given is never changed.
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
#: "<recipe name>@<format>" -> handler(recipe, handle, context) -> new handle; registering one twice is an error
HANDLERS: Registry[Callable[..., Any]] = Registry("handler")


@dataclasses.dataclass(frozen=True)
class ApplyContext:
    """What a handler may use besides the model: the task's data (calibration, fine-tuning) and the device."""

    task: Task | None = None
    device: Any = None  # a DeviceProfile, when the study has one
    seed: int = 0

    def sample_input(self, handle: Any) -> Any:
        """One input to run a built model once, so that what it cannot run is found before it is timed: the
        model's example input, else one sample of the task, else None."""
        if handle.example_input is not None:
            return handle.example_input
        return self.task.sample(1) if self.task is not None else None


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Base of every recipe config. Subclasses are frozen dataclasses whose fields are the parameters."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    #: the model formats it applies to; each has a handler (a test checks it)
    formats: ClassVar[tuple[str, ...]] = ()
    #: parameters that only some formats understand: on any other, a value other than the default is refused
    format_params: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: the format a runtime recipe turns the model into (to-onnx: onnx); precision recipes with a handler for
    #: that format run there, so `compose` puts them after it
    produces: ClassVar[str | None] = None
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
            if prev.produces and prev.produces in self.formats:  # this step runs on what the runtime made
                for param, formats in self.format_params.items():
                    if prev.produces not in formats and getattr(self, param) != _default(type(self), param):
                        return (f"{self.to_spec()} runs on the {prev.produces} model {prev.to_spec()} makes, and "
                                f"{param} applies to {' and '.join(formats)} models only: leave {param} out")
        return None

    # -- behaviour -----------------------------------------------------------------------------
    def apply(self, handle: ModelHandle, context: ApplyContext | None = None) -> ModelHandle:
        """Return a new handle with this recipe applied (and in its lineage); `handle` is left as it was."""
        from ..backends import load_backend

        fmt = handle.format
        if fmt not in self.formats:
            raise UnsupportedError(
                self.to_spec(), f"not available for {fmt} models (it applies to: {', '.join(self.formats) or 'none yet'})")
        for param, formats in self.format_params.items():
            if fmt not in formats and getattr(self, param) != _default(type(self), param):
                raise UnsupportedError(self.to_spec(), f"parameter {param} applies to {' and '.join(formats)} models; "
                                                       f"this is a {fmt} model: leave {param} out")
        load_backend(fmt)
        new = HANDLERS.get(handler_key(type(self), fmt))(self, handle, context or ApplyContext())
        return new.evolve(lineage=handle.lineage + (self,))

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.name, **{k: list(v) if isinstance(v, tuple) else v for k, v in self.params().items()}}

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


def handler_key(recipe_cls: type[Recipe], fmt: str) -> str:
    """Training recipes name another thing than inference ones of the same name (compile, channels-last)."""
    return f"{'train:' if recipe_cls.kind == 'training' else ''}{recipe_cls.name}@{fmt}"


def register_handler(recipe_cls: type[Recipe], *formats: str) -> Callable[[Callable], Callable]:
    """Decorator: `fn(recipe, handle, context) -> new handle` applies `recipe_cls` to models of `formats`."""
    unknown = [f for f in formats if f not in recipe_cls.formats]
    if unknown or not formats:
        raise ValueError(f"recipe {recipe_cls.name!r} declares formats {recipe_cls.formats}; cannot register a "
                         f"handler for {unknown or 'no format'}")

    def deco(fn: Callable) -> Callable:
        for fmt in formats:
            HANDLERS.register(handler_key(recipe_cls, fmt), fn)
        return fn

    return deco


def _default(cls: type[Recipe], param: str) -> Any:
    return next(f.default for f in dataclasses.fields(cls) if f.name == param)


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
    if kind == "tuple[str,...]":  # layer-name globs: one string or a list of them
        items = (value,) if isinstance(value, (str, int)) and not isinstance(value, bool) else value
        if isinstance(items, (list, tuple)):  # Sequential children are named 0, 1, ...: a bare number is a name
            items = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in items]
        if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in items):
            raise ParameterError(recipe, param, value, "a layer-name glob or a list of them, e.g. 'encoder.layer.5.*'")
        return tuple(sorted({v.strip() for v in items}))  # one set of layers, one spec and one trial id
    return value


def _format_value(value: Any) -> str:
    if isinstance(value, tuple):
        return _format_value(value[0]) if len(value) == 1 else f"[{', '.join(map(_format_value, value))}]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value if _is_bare(value) else repr(value)
    return str(value)


def _is_bare(text: str) -> bool:
    """A string that the spec parser reads back as the same string without quotes."""
    if not text or not text.isascii() or not all(c.isalnum() or c in "-_.:" for c in text):
        return False
    from .pipeline import parse_value

    return parse_value(text) == text
