"""Old recipe names, kept for one release: each says what it became and builds that.

    ort-int8-dynamic    → int8-dynamic after to-onnx           (ONNX Runtime's dynamic quantization)
    ort-int8-static     → int8-static(calibration=128) after to-onnx
    tflite-dynamic      → int8-dynamic on a Keras model       (TFLite dynamic range)
    tflite-fp16         → fp16 on a Keras model                (TFLite float16 weights)
    tflite-int8         → int8-static(calibration=200) on a Keras model (TFLite full integer)

`xnnpack=false` on a TFLite alias becomes `+ tflite(xnnpack=false)`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

from ..errors import IncompatibleRecipesError, ParameterError
from ..registry import Registry
from .base import Recipe, recipe_from_params


@dataclasses.dataclass(frozen=True)
class Alias:
    name: str
    target: str                       # the recipe it became
    params: tuple[str, ...]           # the parameters it took
    fixed: tuple[tuple[str, Any], ...] = ()   # its own defaults where they differ from the target's
    after: str | None = None          # a recipe that must come before it (its meaning depends on it)

    def expand(self, spec: str, args: Sequence[Any], kwargs: dict[str, Any], earlier: Sequence[Recipe]) -> list[Recipe]:
        if args:
            raise ParameterError(self.name, "(positional)", tuple(args), f"parameters by name: {', '.join(self.params)}")
        unknown = sorted(set(kwargs) - set(self.params))
        if unknown:
            raise ParameterError(self.name, unknown[0], kwargs[unknown[0]],
                                 f"one of the parameters of {self.name}: {', '.join(self.params)}")
        if self.after and not any(r.name == self.after for r in earlier):
            raise IncompatibleRecipesError(f"cannot combine {spec!r}: {self.name} quantizes an ONNX model: put "
                                           f"{self.after} before it, e.g. '{self.after} + {self.target}' "
                                           f"({self.name} is now {self.target})")
        if "xnnpack" in kwargs and not isinstance(kwargs["xnnpack"], bool):
            raise ParameterError(self.name, "xnnpack", kwargs["xnnpack"], "true or false")
        params = dict(self.fixed)
        params.update({k: v for k, v in kwargs.items() if k != "xnnpack"})
        steps = [recipe_from_params(self.target, (), params)]
        if kwargs.get("xnnpack") is False:
            steps.append(recipe_from_params("tflite", (), {"xnnpack": False}))
        became = " + ".join(s.to_spec() for s in steps)
        where = f" after {self.after}" if self.after else " on a Keras model"
        warnings.warn(f"recipe {self.name!r} is now {became!r}{where}; the old name will be removed in the next "
                      "release", FutureWarning, stacklevel=5)
        return steps


ALIASES: Registry[Alias] = Registry("recipe alias")
for _alias in (
    Alias("ort-int8-dynamic", "int8-dynamic", ("per_channel", "reduce_range"), after="to-onnx"),
    Alias("ort-int8-static", "int8-static", ("calibration", "per_channel"), (("calibration", 128),), after="to-onnx"),
    Alias("tflite-dynamic", "int8-dynamic", ("xnnpack",)),
    Alias("tflite-fp16", "fp16", ("xnnpack",)),
    Alias("tflite-int8", "int8-static", ("calibration", "io", "xnnpack"), (("calibration", 200),)),
):
    ALIASES.register(_alias.name, _alias)
