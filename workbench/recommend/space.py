"""What a search may try: dimensions of choices, each choice a piece of a pipeline spec (or nothing).

    Space({"weights": [None, "prune(0.5, pattern=channel)"], "precision": [None, "int8-static", "bf16"],
           "runtime": [None, "to-onnx"]})

A configuration takes one choice per dimension; `wb.recipes.compose` puts them in order (weights, graph,
precision, runtime — a precision after `to-onnx` is ONNX Runtime's), so one space covers the orders that can
work, and a combination that cannot (two runtimes' worth of conflicts, a recipe for another format) is refused
before anything is built. `default_space` builds the space from what this model is made of, what its task
offers (training data to fine-tune on) and what this device accelerates; what it leaves out, it says why.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ParameterError, WorkbenchError
from ..recipes import RECIPES, Pipeline, compose
from ..tasks import Task, training_data

#: above this many combinations the space is not enumerated up front (the sampler still covers it)
ENUMERATE_LIMIT = 20000
NOTHING = "-"  # how "no recipe in this dimension" is written in a search's parameters


@dataclasses.dataclass(frozen=True)
class Space:
    """Dimensions of choices (a spec fragment each, or None for nothing) and what was left out, and why."""

    dimensions: Mapping[str, tuple[str | None, ...]]
    left_out: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        dims = {}
        if not isinstance(self.dimensions, Mapping):
            raise ParameterError("search", "space", type(self.dimensions).__name__,
                                 "a dict of dimension -> list of spec pieces (None for nothing), or a list of "
                                 "pipeline specs to choose among")
        for name, choices in self.dimensions.items():
            if isinstance(choices, str) or not isinstance(choices, Iterable):
                raise ParameterError("search", f"space[{name!r}]", choices, "a list of spec pieces (None for nothing)")
            clean = []
            for choice in choices:
                if choice is None or (isinstance(choice, str) and choice.strip().lower() in ("", NOTHING, "none")):
                    clean.append(None)
                elif isinstance(choice, str):
                    Pipeline.parse(choice)  # a bad spec fails here, before anything runs
                    clean.append(choice.strip())
                else:
                    raise ParameterError("search", f"space[{name!r}]", choice, "spec strings such as 'int8-static' "
                                                                              "or None")
            if not clean:
                raise ParameterError("search", f"space[{name!r}]", [], "at least one choice")
            dims[str(name)] = tuple(dict.fromkeys(clean))
        if not any(c is not None for cs in dims.values() for c in cs):
            raise ParameterError("search", "space", dict(self.dimensions),
                                 "at least one recipe to try: every choice is None, so there is nothing to search")
        object.__setattr__(self, "dimensions", dims)

    # -- what it holds ---------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Combinations, before impossible ones are taken out."""
        n = 1
        for choices in self.dimensions.values():
            n *= len(choices)
        return n

    def compose(self, choice: Mapping[str, str | None]) -> Pipeline:
        """The pipeline of one choice per dimension (raises WorkbenchError for a combination that cannot work)."""
        return compose(c for c in (choice.get(d) for d in self.dimensions) if c not in (None, NOTHING))

    def enumerate(self) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
        """Every distinct pipeline the space can make (canonical spec → the choice per dimension that makes it,
        NOTHING for none) and the impossible combinations with the reason; both empty when the space is too
        large to enumerate."""
        if self.size > ENUMERATE_LIMIT:
            return {}, {}
        made: dict[str, dict[str, str]] = {}
        impossible: dict[str, str] = {}
        for combo in itertools.product(*self.dimensions.values()):
            choice = dict(zip(self.dimensions, combo))
            try:
                pipeline = self.compose(choice)
            except WorkbenchError as exc:
                impossible[" + ".join(c for c in combo if c)] = str(exc)
                continue
            made.setdefault(pipeline.spec, {d: c if c is not None else NOTHING for d, c in choice.items()})
        return made, impossible

    def singles(self) -> list[Pipeline]:
        """Each recipe alone, dimension by dimension in the space's order: the first configurations a search
        measures (what each technique does by itself)."""
        out: dict[str, Pipeline] = {}
        for choices in self.dimensions.values():
            for choice in choices:
                if choice is not None:
                    pipeline = Pipeline.parse(choice)
                    out.setdefault(pipeline.spec, pipeline)
        return list(out.values())

    def parameters(self) -> dict[str, list[str]]:
        """The dimensions as a sampler's categorical choices (NOTHING for none)."""
        return {d: [c if c is not None else NOTHING for c in cs] for d, cs in self.dimensions.items()}

    def describe(self) -> str:
        lines = [f"{name}: {', '.join(c or 'nothing' for c in choices)}" for name, choices in self.dimensions.items()]
        if self.left_out:
            lines.append("left out: " + "; ".join(self.left_out))
        return "\n".join(lines)

    def check_formats(self, fmt: str) -> None:
        """Refuse a choice whose recipes apply neither to a `fmt` model nor to what a runtime in the space
        makes of it (`xla` on a torch model): it could never run."""
        reachable = {fmt} | {RECIPES.get(step.name).produces for c in self._all() for step in Pipeline.parse(c).steps
                             if RECIPES.get(step.name).produces}
        if fmt == "keras":
            reachable.add("tflite")
        for dimension, choices in self.dimensions.items():
            for choice in choices:
                if choice is None:
                    continue
                for step in Pipeline.parse(choice).steps:
                    if not reachable & set(step.formats):
                        raise ParameterError("search", f"space[{dimension!r}]", choice,
                                             f"recipes for this {fmt} model: {step.name} applies to "
                                             f"{', '.join(step.formats)} models only")

    def _all(self) -> list[str]:
        return [c for cs in self.dimensions.values() for c in cs if c is not None]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _has(ops: frozenset[str], *words: str) -> bool:
    return any(word in op for op in ops for word in words)


def default_space(handle: Any, task: Task, device: Any, *, objective: str = "latency",
                  allow_emulated: bool = False) -> Space:
    """The choices that can work for this model, task and device (see the module docstring)."""
    fmt, ops = handle.format, handle.op_types()
    trainable = training_data(task) is not None
    left_out: list[str] = []
    dims: dict[str, list[str | None]] = {"weights": [None], "graph": [None], "precision": [None], "runtime": [None]}

    def precision_ok(precision: str) -> bool:
        if device.is_accelerated(precision) or allow_emulated:
            return True
        left_out.append(f"{precision}: emulated on this device ({device.label}), slower than fp32 — "
                        "allow_emulated=True tries it anyway")
        return False

    if fmt == "torch":
        conv, linear = _has(ops, "Conv"), _has(ops, "Linear", "LSTM", "GRU")
        if (conv or linear) and trainable:
            dims["weights"] += [f"prune({s}, pattern=channel)" for s in (0.25, 0.5, 0.75)]
        elif conv or linear:
            left_out.append("prune: the task has no labelled training data to fine-tune on, and pruning "
                            "without fine-tuning loses accuracy")
        if _has(ops, "BatchNorm"):
            dims["graph"].append("fuse")
        if conv:
            dims["graph"].append("channels-last")
        if linear:
            dims["precision"] += ["int8-dynamic", "int8-dynamic(per_channel=true)"]
        if conv or linear:
            dims["precision"] += ["int8-static", "int8-static(calibration=64)"]
            engines = tuple(getattr(device, "quantized_engines", ()))
            if "onednn" in engines and device.recommended_quantized_engine != "onednn":
                dims["precision"].append("int8-static(engine=onednn)")
            if trainable:
                dims["precision"].append("qat")
        if objective == "size" and linear:
            dims["precision"] += ["int8-weight-only", "int4-weight-only"]
        for precision in ("bf16", "fp16"):
            if precision_ok(precision):
                dims["precision"].append(precision)
        dims["runtime"] += ["torchscript", "compile"]
        if _installed("onnxruntime"):
            dims["runtime"].append("to-onnx")
            if _has(ops, "Attention"):  # its transformer graphs run faster in ONNX Runtime (1.09x on MiniLM int8)
                dims["runtime"].append("to-onnx(exporter=torchscript)")
        else:
            left_out.append("to-onnx: onnxruntime is not installed (pip install 'efficiency-workbench[onnx]')")
        if _installed("openvino"):
            dims["runtime"].append("to-openvino")
        else:
            left_out.append("to-openvino: openvino is not installed (pip install 'efficiency-workbench[openvino]')")
        if _installed("executorch") and conv:
            dims["runtime"].append("executorch")
        if not getattr(device, "gpus", ()):
            left_out.append("tf32, sparse-kernels (2:4): need a CUDA GPU; there is none here")
    elif fmt == "keras":
        if trainable:
            dims["weights"].append("prune(0.5)")
            if objective == "size":
                dims["weights"].append("cluster(16)")
        else:
            left_out.append("prune, cluster, qat: the task has no labelled training data to fine-tune on")
        dims["precision"] += ["int8-dynamic", "int8-static", "fp16"]
        if precision_ok("bf16"):  # the mixed_bfloat16 policy; `bf16 + xla` is the runtime dimension's xla
            dims["precision"].append("bf16")
        if trainable:
            dims["precision"].append("qat")
        dims["runtime"] += ["tflite", "xla"]
    elif fmt == "onnx":
        dims["precision"] += ["int8-dynamic", "int8-dynamic(per_channel=true)", "int8-static"]
    else:
        raise ParameterError("search", "model", fmt, "a torch, Keras or ONNX model: a finished "
                                                     f"{fmt} model has no recipes left to search over")
    # what is quick to build first (a search measures each recipe alone in this order): precision and runtime
    # recipes take seconds, pruning and QAT fine-tune
    precision = [c for c in dims["precision"] if c != "qat"] + [c for c in dims["precision"] if c == "qat"]
    ordered = {"precision": precision, "runtime": dims["runtime"], "graph": dims["graph"], "weights": dims["weights"]}
    return Space({k: tuple(v) for k, v in ordered.items() if len(v) > 1}, tuple(left_out))
