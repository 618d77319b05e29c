"""Recipes on OpenVINO models: int8-static (NNCF post-training quantization), int8-weight-only (NNCF weight
compression) and bf16 (the CPU plugin's bf16 inference precision)."""

from __future__ import annotations

import contextlib
import io
import logging

from ...errors import UnsupportedError
from ...recipes import ApplyContext, register_handler
from ...recipes.precision import Bf16
from ...recipes.quantization import Int8Static, Int8WeightOnly
from .handle import OpenVinoModel, from_ov_model

#: operations that make a graph a transformer for NNCF (its TRANSFORMER model type keeps attention accurate)
ATTENTION_OPS = ("Softmax", "ScaledDotProductAttention")


@contextlib.contextmanager
def _quiet():
    """NNCF logs tables and draws progress bars on stdout: kept off notebooks and pages."""
    import nncf

    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _run(spec: str, fn):
    try:
        with _quiet():
            return fn()
    except UnsupportedError:
        raise
    except Exception as exc:
        raise UnsupportedError(spec, f"NNCF could not process this model ({type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None


@register_handler(Int8Static, "openvino")
def nncf_int8_static(recipe: Int8Static, handle: OpenVinoModel, context: ApplyContext) -> OpenVinoModel:
    import nncf

    spec = recipe.to_spec()
    if context.task is None:
        raise UnsupportedError(spec, "it calibrates on data: run it in a Study, whose task supplies the samples")
    task = context.task
    samples = task.calibration(recipe.calibration)
    where = task.calibration_source
    feeds = [handle.prepare(samples[i:i + 16]) for i in range(0, len(samples), 16)]
    transformer = bool(set(ATTENTION_OPS) & handle.op_types())
    options = {"model_type": nncf.ModelType.TRANSFORMER, "preset": nncf.QuantizationPreset.MIXED} if transformer else {}
    model = _run(spec, lambda: nncf.quantize(handle.model(), nncf.Dataset(feeds), subset_size=len(samples), **options))
    note = (f"{spec}: NNCF post-training int8 over {len(samples)} sample(s) of {where}"
            f"{', transformer model type (mixed preset)' if transformer else ''}")
    return from_ov_model(model, handle.source, handle.notes + (note,), precision="int8")


@register_handler(Int8WeightOnly, "openvino")
def nncf_weight_compression(recipe: Int8WeightOnly, handle: OpenVinoModel, context: ApplyContext) -> OpenVinoModel:
    import nncf

    spec = recipe.to_spec()
    model = _run(spec, lambda: nncf.compress_weights(handle.model(), mode=nncf.CompressWeightsMode.INT8_ASYM))
    return from_ov_model(model, handle.source, handle.notes + (f"{spec}: NNCF weight compression, int8 asymmetric "
                                                               "per output channel; activations float",),
                         precision="int8")


@register_handler(Bf16, "openvino")
def bf16_inference(recipe: Bf16, handle: OpenVinoModel, context: ApplyContext) -> OpenVinoModel:
    from ...profiling.device import device

    profile = context.device or device(measure=False)
    isa = set(getattr(profile, "isa", ()) or ())
    native = [f for f in ("amx_bf16", "avx512_bf16") if f in isa]
    if not native:
        raise UnsupportedError(recipe.to_spec(), "OpenVINO's CPU plugin runs bf16 only on CPUs with avx512_bf16 or "
                                                 f"AMX; this one ({getattr(profile, 'label', 'this CPU')}) has neither")
    return OpenVinoModel(handle.payload, handle.source, precision="bf16", inference_precision="bf16",
                         notes=handle.notes + (f"bf16: the CPU plugin's bf16 inference precision ({native[0]})",))
