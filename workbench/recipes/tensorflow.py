"""TensorFlow recipes: TFLite conversion (run in the LiteRT interpreter), XLA, and edge-target checks.

Configs only; the handlers live in workbench.backends.keras.

    tflite            float32 flatbuffer; on a converted (tflite) model: how the interpreter runs it
    xla               the Keras model under tf.function(jit_compile=True)
    edgetpu           check: can the EdgeTPU compiler map every op (all int8, supported kinds)?
    tf-micro          check: does the model fit a microcontroller's flash and RAM?
    tfjs              TensorFlow.js graph model run by TF.js in Node.js (wasm or cpu backend)

TFLite's quantized converters are the precision recipes on a Keras model: `int8-dynamic` (dynamic range),
`int8-static` (full integer, representative dataset), `fp16` (float16 weights). The names tflite-dynamic,
tflite-int8 and tflite-fp16 are aliases of them for one release (see recipes.aliases).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .base import Recipe, check_choice, check_range, register_recipe


@register_recipe
@dataclass(frozen=True)
class Tflite(Recipe):
    """Convert a Keras model to a float32 TFLite flatbuffer (int8 after `qat`), run in the LiteRT interpreter.
    `xnnpack` runs the interpreter with (true) or without (false) the XNNPACK delegate, so its effect can be
    measured; after a quantizing converter (`int8-static + tflite(xnnpack=false)`) it only sets that.
    `sparse` stores pruned weights sparse (the converter's EXPERIMENTAL_SPARSITY: a smaller file) so that XNNPACK
    may run its sparse kernels; the row says whether it will, and why not (`backends/keras/sparse.py`)."""

    name = "tflite"
    kind = "runtime"
    formats = ("keras", "tflite")
    summary = ("convert to a TFLite flatbuffer, run in the LiteRT interpreter (xnnpack on/off; sparse=true keeps "
               "pruned weights sparse; int8 after qat)")

    xnnpack: bool = True
    sparse: bool = False


@register_recipe
@dataclass(frozen=True)
class Xla(Recipe):
    """The Keras model compiled by XLA (`tf.function(jit_compile=True)`); the first call (compilation) is
    reported apart as first_call_ms."""

    name = "xla"
    kind = "runtime"
    formats = ("keras",)
    summary = "XLA compilation of the Keras model (jit_compile=True)"


class _Target(Recipe):
    kind = "target"
    formats = ("tflite",)

    def conflicts_with(self, earlier: Sequence[Recipe]) -> str | None:
        if not any(r.kind in ("runtime", "precision") for r in earlier):
            return (f"{self.to_spec()} checks a TFLite model: put a converter before it, e.g. "
                    f"'int8-static + {self.to_spec()}' or 'tflite + {self.to_spec()}'")
        if any(r.kind == "target" for r in earlier):
            return "a pipeline checks one target; run one pipeline per target"
        return super().conflicts_with(earlier)


@register_recipe
@dataclass(frozen=True)
class EdgeTpu(_Target):
    """EdgeTPU compatibility of a full-int8 TFLite model: every op int8 (uint8) and of a kind the EdgeTPU
    compiler maps; the offenders are listed. A check (the row is timed on this CPU), not an EdgeTPU run."""

    name = "edgetpu"
    summary = "check: all ops int8 and EdgeTPU-supported (lists the offenders)"


@register_recipe
@dataclass(frozen=True)
class TfMicro(_Target):
    """TensorFlow Lite for Microcontrollers fit: flatbuffer bytes against `flash_kb` and an arena estimate
    (the largest set of activation tensors alive at once, plus per-tensor overhead) against `ram_kb`."""

    name = "tf-micro"
    summary = "check: flatbuffer and tensor arena against a flash / RAM budget"

    flash_kb: int = 1024
    ram_kb: int = 256

    def validate(self) -> None:
        check_range(self.name, "flash_kb", self.flash_kb, 1, 1_000_000)
        check_range(self.name, "ram_kb", self.ram_kb, 1, 1_000_000)


@register_recipe
@dataclass(frozen=True)
class Tfjs(Recipe):
    """Convert a Keras model to a TensorFlow.js graph model and run it with TF.js in Node.js. `backend`: wasm
    (XNNPACK compiled to WebAssembly, what a web page gets) or cpu (plain JavaScript, TF.js's fallback).
    `quantize` = none | uint8 | float16 stores the weights smaller; TF.js dequantizes them to float32 at load.
    The converter runs in its own environment (`make tfjs`; see workbench.backends.tfjs.tools)."""

    name = "tfjs"
    kind = "runtime"
    formats = ("keras",)
    summary = "TF.js graph model run by TF.js in Node.js (wasm or cpu backend; `make tfjs` installs it)"

    quantize: str = "none"
    backend: str = "wasm"

    def validate(self) -> None:
        check_choice(self.name, "quantize", self.quantize, ("none", "uint8", "float16"))
        check_choice(self.name, "backend", self.backend, ("wasm", "cpu"))
