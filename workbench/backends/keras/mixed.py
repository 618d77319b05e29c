"""bf16 on a Keras model: the layers rebuilt under Keras' `mixed_bfloat16` policy.

The mixed policy keeps every variable in float32 and computes in bfloat16 (Keras' mixed-precision guide);
the model's output layers stay float32, as that guide recommends, so logits and softmax keep fp32's
precision. `bf16` runs the graph in TensorFlow (its oneDNN bf16 kernels); `bf16 + xla` compiles it with XLA
instead — two choices, measured apart, because on a CPU they differ (on the 2-core AMD EPYC with avx512_bf16 it was written on,
TensorFlow's graph ran digits-keras at batch 256 faster in bf16 than XLA did). Either needs avx512_bf16 or
AMX on a CPU: elsewhere bf16 is converted to fp32 and back around every op, which can only be slower, and the
row is `unsupported` and says why (GPUs run bf16 natively: where TensorFlow sees one it is not refused).
"""

from __future__ import annotations

from typing import Any

from ..._native import quiet_native_stderr
from ...errors import UnsupportedError
from ...recipes import ApplyContext, register_handler
from ...recipes.precision import Bf16
from . import _tf
from .convert import _first_line
from .handle import KerasModel

POLICY = "mixed_bfloat16"


def _output_layers(model: Any) -> set[str]:
    names = getattr(model, "output_names", None)
    if names:
        return set(names)
    return {model.layers[-1].name} if getattr(model, "layers", None) else set()


def with_policy(model: Any, flavor: str, policy: str) -> Any:
    """A copy of a Sequential or functional `model` whose layers (not its inputs or outputs) compute under
    `policy`, with the same (float32) weights; nested models are rebuilt too."""
    lib = _tf.keras3() if flavor == "keras3" else _tf.tf_keras()
    keep = _output_layers(model)

    def rebuild(layer: Any) -> Any:
        if type(layer).__name__ == "InputLayer" or layer.name in keep:
            return layer.__class__.from_config(layer.get_config())
        if hasattr(layer, "layers") and hasattr(layer, "get_config"):  # a nested model: its layers, not itself
            return with_policy(layer, flavor, policy)
        config = layer.get_config()
        config["dtype"] = lib.DTypePolicy(policy) if flavor == "keras3" else lib.mixed_precision.Policy(policy)
        return layer.__class__.from_config(config)

    copy = lib.models.clone_model(model, clone_function=rebuild)
    copy.set_weights(model.get_weights())
    return copy


@register_handler(Bf16, "keras")
def bf16(recipe: Bf16, handle: KerasModel, context: ApplyContext) -> KerasModel:
    spec = recipe.to_spec()
    if handle.precision != "fp32":
        raise UnsupportedError(spec, f"the model is already {handle.precision}")
    from ...profiling.device import device

    profile = context.device or device(measure=False)
    gpu = bool(_tf.tf().config.list_physical_devices("GPU"))
    if not gpu and not profile.is_accelerated("bf16"):
        raise UnsupportedError(spec, f"this CPU ({profile.cpu_model}) has neither avx512_bf16 nor AMX: TensorFlow and "
                                     "XLA would convert bf16 to fp32 and back around every op (emulated, slower than fp32). Measure "
                                     "bf16 on a CPU that has them (Xeon Sapphire Rapids+, EPYC Zen 4+), a GPU or a TPU")
    if handle.subclassed:
        raise UnsupportedError(spec, f"it rebuilds the layers under Keras' {POLICY} policy, which needs a Sequential "
                                     "or functional model; for a subclassed model call keras.mixed_precision."
                                     f"set_global_policy('{POLICY}') before building it, and load that model")
    try:
        model = with_policy(handle.payload, handle.flavor, POLICY)
    except Exception as exc:
        raise UnsupportedError(spec, f"Keras could not rebuild the model under {POLICY} "
                                     f"({type(exc).__name__}: {_first_line(exc)})") from None
    notes = handle.notes + (f"{spec}: Keras' {POLICY} policy: weights stay float32 (the size is fp32's), layers "
                            "compute in bfloat16, the output layers in float32",)
    new = handle.evolve(payload=model, precision="bf16", dtype_policy=POLICY, notes=notes)
    try:
        with quiet_native_stderr():
            new.predict(context.sample_input(handle))
    except Exception as exc:
        raise UnsupportedError(spec, f"the {POLICY} model does not run ({type(exc).__name__}: "
                                     f"{_first_line(exc)})") from None
    return new
