"""Ordered pipelines of recipes, and the spec language that names them.

    prune(0.5) + int8-dynamic                    a pipeline of two steps
    prune(sparsity=0.5, finetune=0) + fold-bn    keyword parameters
    baseline                                     the empty pipeline (the model as given)
    int8-dynamic; prune(0.5)                     several pipelines (parse_pipelines)

A pipeline's canonical spec, its dict form and its cache key are the same value in three shapes:
`Pipeline.parse(p.spec) == p` and `Pipeline.from_dict(p.to_dict()) == p`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import IncompatibleRecipesError, SpecError, WorkbenchError
from ..registry import Registry
from .base import KINDS, RECIPES, ApplyContext, Recipe, recipe_from_params

if TYPE_CHECKING:
    from ..model import ModelHandle

BASELINE = "baseline"
_STEP = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_.\-]*)\s*(?:\((.*)\))?\s*$", re.S)
_KEY = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$", re.S)


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """An ordered, hashable sequence of recipes."""

    steps: tuple[Recipe, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        for i, step in enumerate(self.steps):
            if not isinstance(step, Recipe):
                raise WorkbenchError(f"pipeline step {i} is {type(step).__name__}, not a Recipe")
            reason = step.conflicts_with(self.steps[:i])
            if reason:
                raise IncompatibleRecipesError(f"cannot combine {self.spec!r}: {reason}")

    # -- the three shapes ------------------------------------------------------------------------
    @property
    def spec(self) -> str:
        return " + ".join(step.to_spec() for step in self.steps) or BASELINE

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "steps": [step.to_dict() for step in self.steps]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], registry: Registry | None = None) -> Pipeline:
        if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
            raise SpecError(str(data), "a pipeline dict needs a 'steps' list of {'recipe': name, ...} dicts")
        steps = []
        for step in data["steps"]:
            if not isinstance(step, dict) or "recipe" not in step:
                raise SpecError(str(data), f"step {step!r} has no 'recipe' key")
            params = {k: v for k, v in step.items() if k != "recipe"}
            steps.append(recipe_from_params(step["recipe"], (), params, registry))
        return cls(tuple(steps))

    @classmethod
    def parse(cls, spec: str, registry: Registry | None = None) -> Pipeline:
        """`registry`: where names are looked up (the inference recipes unless given)."""
        registry = registry or RECIPES
        if not isinstance(spec, str):
            raise SpecError(repr(spec), f"expected a string, got {type(spec).__name__}")
        _check_characters(spec)
        text = spec.strip()
        if not text:
            raise SpecError(spec, "it is empty", f"write '{BASELINE}' for the model as given")
        if text.lower() == BASELINE:
            return cls(())
        steps: list[Recipe] = []
        for part in _split_top(spec, text, "+"):
            steps.extend(_parse_step(spec, part, registry, steps))
        return cls(tuple(steps))

    # -- behaviour ------------------------------------------------------------------------------
    @property
    def is_baseline(self) -> bool:
        return not self.steps

    def kinds(self) -> set[str]:
        return {step.kind for step in self.steps}

    def apply(self, handle: ModelHandle, context: ApplyContext | None = None) -> ModelHandle:
        for step in self.steps:
            handle = step.apply(handle, context)
        return handle

    def __add__(self, other: PipelineLike) -> Pipeline:
        return Pipeline(self.steps + as_pipeline(other).steps)

    def __str__(self) -> str:
        return self.spec

    def __len__(self) -> int:
        return len(self.steps)


PipelineLike = str | Pipeline | Recipe | dict | None


def as_pipeline(value: PipelineLike, registry: Registry | None = None) -> Pipeline:
    """Accept a spec string, a Pipeline, a single Recipe, a dict, or None (the baseline). `registry`: where
    spec names are looked up (the inference recipes unless given)."""
    if value is None:
        return Pipeline(())
    if isinstance(value, Pipeline):
        return value
    if isinstance(value, Recipe):
        return Pipeline((value,))
    if isinstance(value, dict):
        return Pipeline.from_dict(value, registry)
    if isinstance(value, str):
        return Pipeline.parse(value, registry)
    raise SpecError(repr(value), f"a pipeline is a spec string, a Pipeline, a Recipe or a dict, not {type(value).__name__}")


def parse_pipelines(value: str | Iterable[PipelineLike], registry: Registry | None = None) -> list[Pipeline]:
    """`"a; b + c"` or a list of pipeline-likes → pipelines (all parsed before anything runs)."""
    if isinstance(value, str):
        parts = [p for p in _split_top(value, value, ";") if p.strip()] if value.strip() else []
        if not parts:
            raise SpecError(value, "no pipeline given", "e.g. 'int8-dynamic; prune(0.5)'")
        return [Pipeline.parse(p, registry) for p in parts]
    if isinstance(value, (Pipeline, Recipe, dict)):
        return [as_pipeline(value, registry)]
    try:
        items = list(value)
    except TypeError:
        raise SpecError(repr(value), "expected a spec string or a list of pipelines") from None
    return [as_pipeline(v, registry) for v in items]


def compose(steps: Iterable[PipelineLike]) -> Pipeline:
    """One pipeline from recipes given in any order (a panel's toggles): weights, graph, precision, runtime,
    target — except that a precision recipe the runtime's format has a handler for follows that runtime
    (`to-onnx` + `int8-dynamic` is ONNX Runtime's quantization; `fp16`, which ONNX models lack, stays before
    it). The order within a kind is kept."""
    recipes = [r for step in steps for r in as_pipeline(step).steps]
    produced = {r.produces for r in recipes if r.produces}
    rank = {kind: float(i) for i, kind in enumerate(KINDS)}

    def order(recipe: Recipe) -> float:
        if recipe.kind == "precision" and produced & set(recipe.formats):
            return rank["runtime"] + 0.5
        return rank[recipe.kind]

    return Pipeline(tuple(sorted(recipes, key=order)))


def parse_value(text: str) -> Any:
    """A spec value: number, true/false/none, quoted string, a bare word such as x86 or 2:4, or a list of
    these in brackets, e.g. exclude=[fc1, 'encoder.layer.5.*']."""
    t = text.strip()
    if t.startswith("[") and t.endswith("]"):
        inner = t[1:-1]
        return [parse_value(item) for item in _split_top(t, inner, ",")] if inner.strip() else []
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return t[1:-1]
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


#: longer than any real pipeline (an exclude= list of every layer of a large model included)
MAX_SPEC_CHARS = 20_000


def _check_characters(spec: str) -> None:
    """Specs are ASCII outside quoted values: a look-alike pasted from a document (＋, ‑, a Cyrillic а) is named with
    its position; a NUL or another control character is refused anywhere; a spec longer than MAX_SPEC_CHARS is
    refused before it is read. Quoted values (layer names in exclude=) may be any text."""
    import unicodedata

    if len(spec) > MAX_SPEC_CHARS:
        raise SpecError(spec, f"it is {len(spec):,} characters long, more than the {MAX_SPEC_CHARS:,} any pipeline "
                              "needs", "check what was passed (a file's contents instead of a spec?)")
    quote = ""
    for i, ch in enumerate(spec):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        printable = ch.isprintable() if quote else " " <= ch <= "~"
        if printable or ch in "\t\n\r":
            continue
        if ch == "\0":
            what = "a NUL byte"
        else:
            what = f"{unicodedata.name(ch, 'a control character')} (U+{ord(ch):04X})"
        plain = unicodedata.normalize("NFKC", ch)
        hint = (f"it looks like {plain!r}: type it as plain ASCII" if plain.isascii() and plain.isprintable()
                else "specs are plain ASCII outside quotes: type it again rather than pasting it from a document")
        raise SpecError(spec, f"character {i + 1} is {what}", hint)


def _parse_step(spec: str, text: str, registry: Registry, earlier: list[Recipe]) -> list[Recipe]:
    """The recipe a step names (an old name, an alias, may become two)."""
    from .aliases import ALIASES

    m = _STEP.match(text)
    if not m:
        raise SpecError(spec, f"{text.strip()!r} is not a recipe call",
                        "write name or name(value, key=value), e.g. prune(0.5)")
    name, arg_text = m.group(1), m.group(2)
    alias = ALIASES.get(name) if registry is RECIPES and name not in registry and name in ALIASES else None
    if name not in registry and alias is None:
        registry.get(name)  # raises UnknownNameError listing the known ones
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    if arg_text is not None and arg_text.strip():
        for raw in _split_top(spec, arg_text, ","):
            if not raw.strip():
                raise SpecError(spec, f"empty parameter in {text.strip()!r}")
            km = _KEY.match(raw)
            if km:
                key = km.group(1)
                if key in kwargs:
                    raise SpecError(spec, f"parameter {key!r} given twice in {text.strip()!r}")
                kwargs[key] = parse_value(km.group(2))
            elif kwargs:
                raise SpecError(spec, f"positional value {raw.strip()!r} after a keyword in {text.strip()!r}")
            else:
                args.append(parse_value(raw))
    if alias is not None:
        return alias.expand(spec, args, kwargs, earlier)
    return [recipe_from_params(name, args, kwargs, registry)]


def _split_top(spec: str, text: str, sep: str) -> list[str]:
    """Split on `sep` outside parentheses and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, c in enumerate(text):
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
            if depth < 0:
                raise SpecError(spec, f"unmatched {c!r} at position {i}")
        elif c == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth or quote:
        raise SpecError(spec, "unclosed '(', '[' or quote")
    parts.append(text[start:])
    if sep == "+" and any(not p.strip() for p in parts):
        raise SpecError(spec, "a '+' with no recipe on one side")
    return parts

