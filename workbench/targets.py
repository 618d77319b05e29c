"""Deployment targets this machine cannot run, still answered: what each accepts, how the workbench gets a model
there, what of it is measured here and what is only checked statically — and a check of a converted model.

    wb.targets.table()                      # one row per target (the README's table is this)
    wb.targets.check("net.tflite")          # per target: compatible / partly / incompatible / not checked, and why
    workbench targets [--check net.tflite] [--json]

Checks read the flatbuffer (ops, tensor types, shapes, sizes); nothing runs on the target. The EdgeTPU check uses
Coral's published op list; TF Micro's is a size and arena fit; the others check what their delegate takes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import DataError
from .registry import Registry

VERDICTS = ("compatible", "partly", "incompatible", "not checked")


@dataclasses.dataclass(frozen=True)
class TargetCheck:
    target: str
    verdict: str                  # one of VERDICTS
    findings: tuple[str, ...]     # the offending ops, tensors or sizes (or why nothing could be checked)

    def as_row(self) -> dict[str, Any]:
        return {"target": self.target, "verdict": self.verdict, "findings": "; ".join(self.findings)}


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    title: str
    runtime: str                  # what runs the model there
    precisions: tuple[str, ...]   # what it computes in
    accepts: str                  # the model it takes
    pipeline: str                 # how the workbench gets a model there
    measured_here: str            # what of it this machine measures
    checked: str                  # what is checked statically, without the target
    check: Callable[[bytes], TargetCheck] | None = None

    def as_row(self) -> dict[str, Any]:
        return {"target": self.name, "title": self.title, "runtime": self.runtime,
                "precisions": ", ".join(self.precisions), "accepts": self.accepts, "pipeline": self.pipeline,
                "measured here": self.measured_here, "checked statically": self.checked}


TARGETS: Registry[Target] = Registry("deployment target")


# -- the checks ----------------------------------------------------------------------------------------

def _tensor_types(model: bytes) -> dict[str, int]:
    """How many ops compute in each type (the type of an op's first non-constant input)."""
    from .backends.keras.litert import constant_tensors, ints, parse, type_names

    tree, types = parse(model), type_names()
    constant = {id(t) for t, _ in constant_tensors(tree)}
    counts: dict[str, int] = {}
    for subgraph in tree.subgraphs or []:
        tensors = subgraph.tensors or []
        for op in subgraph.operators or []:
            live = [tensors[t] for t in ints(op.inputs) if t >= 0 and id(tensors[t]) not in constant]
            kind = types.get(live[0].type, "?") if live else "CONST"
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def _check_edgetpu(model: bytes) -> TargetCheck:
    from .backends.keras.edge import edgetpu_report

    report = edgetpu_report(model)
    if report.compatible:
        return TargetCheck("edgetpu", "compatible", (f"all {report.ops - len(report.on_cpu)} ops map to the Edge TPU",
                                                     *(f"{op} stays on the CPU (float I/O)" for op in report.on_cpu)))
    mapped = report.ops - len(report.offenders) - len(report.on_cpu)
    verdict = "partly" if mapped > 0 else "incompatible"
    return TargetCheck("edgetpu", verdict, (f"{len(report.offenders)} of {report.ops} ops cannot run on the Edge TPU "
                                            "(the compiler runs everything from the first of them on the CPU)",
                                            *report.offenders))


def _check_micro(model: bytes, flash_kb: int = 1024, ram_kb: int = 256) -> TargetCheck:
    from .backends.keras.edge import micro_fit

    fit = micro_fit(model, flash_kb * 1024, ram_kb * 1024)
    types = _tensor_types(model)
    findings = [f"flatbuffer {fit.flash_bytes / 1024:.1f} KB of {flash_kb} KB flash, arena about "
                f"{fit.arena_bytes / 1024:.1f} KB of {ram_kb} KB RAM (batch 1; a Cortex-M4F-class board)"]
    if types.get("FLOAT32"):
        findings.append(f"{types['FLOAT32']} float op(s): TFLM runs them, slowly on MCUs without an FPU; "
                        "int8-static makes them int8")
    return TargetCheck("tflite-micro", "compatible" if fit.fits else "incompatible", tuple(findings))


def _precision_check(name: str, takes: tuple[str, ...], why: str) -> Callable[[bytes], TargetCheck]:
    """A check of the types the ops compute in: `takes` (TFLite tensor types) run on the target, the rest fall
    back to the CPU (partly) or are refused (incompatible, when no op is in `takes`)."""

    def check(model: bytes) -> TargetCheck:
        types = _tensor_types(model)
        total = sum(types.values())
        ok = sum(n for t, n in types.items() if t in takes or t == "CONST")
        shown = ", ".join(f"{n} {t.lower()}" for t, n in sorted(types.items()))
        if ok == total:
            return TargetCheck(name, "compatible", (f"ops compute in {shown}: {why}",))
        verdict = "partly" if ok else "incompatible"
        return TargetCheck(name, verdict, (f"{total - ok} of {total} ops compute in a type the target does not take "
                                           f"({shown}): {why}",))

    return check


def _register(target: Target) -> None:
    TARGETS.register(target.name, target)


_TFLITE = ("the same flatbuffer in this machine's LiteRT interpreter: size, accuracy and fidelity as on the device; "
           "latency is this CPU's, not the device's")
for _target in (
    Target("android-nnapi", "Android NNAPI", "TFLite + the NNAPI delegate (the phone's NPU, DSP or GPU driver)",
           ("fp32", "fp16 (relaxed)", "int8"), "a TFLite flatbuffer; ops the driver lacks run on the CPU; NNAPI is "
           "deprecated from Android 15 (the GPU delegate or a vendor delegate replaces it)",
           "tflite, fp16, int8-static on a Keras model; to-onnx is not a path", _TFLITE,
           "tensor types (fp32, fp16, int8 run; int16 activations do not)",
           _precision_check("android-nnapi", ("FLOAT32", "FLOAT16", "INT8", "UINT8", "INT32"),
                            "NNAPI takes float32 (optionally relaxed to fp16) and 8-bit quantized ops")),
    Target("ios-coreml", "iOS Core ML (ANE, GPU) and Accelerate (CPU)",
           "Core ML (coremltools), or TFLite with the Core ML delegate; Accelerate / BNNS for the CPU",
           ("fp16 (ANE)", "fp32", "int8 weights"), "an ML package converted with coremltools (from torch.export or "
           "TorchScript), or a float TFLite model for the Core ML delegate (it takes no quantized models)",
           "torchscript or to-onnx here, then coremltools on a Mac (not installed here); tflite / fp16 for the "
           "Core ML delegate", "nothing (Core ML runs on Apple platforms only)",
           "for the Core ML delegate: a float model (an int8 TFLite model is refused)",
           _precision_check("ios-coreml", ("FLOAT32", "FLOAT16", "INT32"),
                            "the Core ML delegate takes float models only")),
    Target("hexagon", "Qualcomm Hexagon DSP", "TFLite + the Hexagon delegate (deprecated; QNN's delegate replaces it)",
           ("int8", "uint8"), "a fully 8-bit quantized TFLite model with static shapes",
           "int8-static on a Keras model", _TFLITE, "tensor types (every op 8-bit)",
           _precision_check("hexagon", ("INT8", "UINT8", "INT32"), "the Hexagon DSP runs 8-bit quantized ops only")),
    Target("tflite-gpu", "TFLite GPU delegate", "OpenCL / OpenGL ES on Android, Metal on iOS",
           ("fp32", "fp16"), "a TFLite flatbuffer; int8 models run dequantized to fp16; unsupported ops run on the CPU",
           "tflite or fp16 on a Keras model", _TFLITE, "tensor types (float ops; 8-bit ops are dequantized)",
           _precision_check("tflite-gpu", ("FLOAT32", "FLOAT16", "INT32"),
                            "the GPU delegate computes in fp32 / fp16; quantized ops are dequantized first")),
    Target("edgetpu", "Coral Edge TPU", "TFLite + the Edge TPU delegate, after edgetpu_compiler",
           ("int8",), "a fully int8 TFLite model with static shapes, of ops on Coral's published list",
           "int8-static + edgetpu on a Keras model (the recipe is the same check)", _TFLITE,
           "Coral's op list, int8 tensors, static shapes, at most 3 non-unit inner dimensions", _check_edgetpu),
    Target("jetson", "NVIDIA Jetson", "TensorRT or PyTorch CUDA on the Jetson's GPU",
           ("fp32", "fp16", "int8", "2:4 sparse (Orin)"), "an ONNX model (TensorRT), or a torch model (CUDA)",
           "to-onnx, or a study with target='cuda' on the Jetson itself",
           "everything CUDA when the device profile recognises a Jetson (workbench device says so); elsewhere nothing",
           "nothing statically (TensorRT's support depends on its version)"),
    Target("tfjs-web", "TensorFlow.js (web pages, Node.js)",
           "TF.js: wasm (XNNPACK in WebAssembly), WebGL or WebGPU backends in a browser; wasm or cpu in Node.js",
           ("fp32", "uint8 / float16 weights (dequantized at load)"),
           "a TF.js graph model (model.json + weight shards) with ops TF.js has kernels for on the chosen backend",
           "tfjs(quantize=..., backend=wasm|cpu) on a Keras model (`make tfjs` installs the converter and TF.js)",
           "TF.js itself in Node.js on this CPU (wasm or cpu backend, one thread): size, accuracy, fidelity, latency; "
           "not WebGL / WebGPU (no browser GPU here)",
           "nothing statically: the tfjs recipe runs the converted model once, and a kernel TF.js lacks is an "
           "unsupported row naming it"),
    Target("tflite-micro", "TensorFlow Lite for Microcontrollers", "the TFLM interpreter on an MCU (Cortex-M)",
           ("int8", "fp32"), "a TFLite flatbuffer that fits the board's flash, with an arena in its RAM",
           "int8-static + tf-micro(flash_kb=..., ram_kb=...) on a Keras model", _TFLITE,
           "flash and arena size against a 1 MB / 256 KB board (tf-micro takes others)", _check_micro),
):
    _register(_target)


# -- the public verbs ----------------------------------------------------------------------------------

def names() -> list[str]:
    return TARGETS.names()


def table():
    """One row per target: what it accepts, how to get there, what is measured here and what is checked."""
    import pandas as pd

    return pd.DataFrame([TARGETS.get(name).as_row() for name in _ORDER])


_ORDER = ("android-nnapi", "ios-coreml", "hexagon", "tflite-gpu", "edgetpu", "jetson", "tfjs-web", "tflite-micro")


def _flatbuffer(model: Any) -> bytes:
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise DataError(f"no model file at {str(path)!r}")
        if path.suffix.lower() != ".tflite":
            raise DataError(f"{path.name!r}: the targets check TFLite flatbuffers; convert it first (tflite or "
                            "int8-static on a Keras model, then export)")
        return path.read_bytes()
    if getattr(model, "format", None) == "tflite":
        return model.payload
    raise DataError(f"cannot check a {type(model).__name__}: give a .tflite file, its bytes or a TFLite handle "
                    "(tflite or int8-static on a Keras model)")


def check(model: Any, targets: list[str] | None = None) -> list[TargetCheck]:
    """Each target's verdict on a TFLite model (a path, bytes or a TFLite handle)."""
    from .backends.keras.litert import parse

    blob = _flatbuffer(model)
    try:
        parse(blob)
    except Exception as exc:
        raise DataError(f"not a readable TFLite flatbuffer ({type(exc).__name__}: {exc})") from None
    out = []
    for name in targets or _ORDER:
        target = TARGETS.get(name)
        out.append(target.check(blob) if target.check else
                   TargetCheck(name, "not checked", (f"{target.checked}",)))
    return out


def markdown() -> str:
    """The README's targets table."""
    rows = ["| target | runs with | precisions | measured here | checked statically |", "|---|---|---|---|---|"]
    for name in _ORDER:
        t = TARGETS.get(name)
        rows.append(f"| `{t.name}` ({t.title}) | {t.runtime} | {', '.join(t.precisions)} | {t.measured_here} | "
                    f"{t.checked} |")
    return "\n".join(rows)


__all__ = ["TARGETS", "Target", "TargetCheck", "VERDICTS", "check", "markdown", "names", "table"]
