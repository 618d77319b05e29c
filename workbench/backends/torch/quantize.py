"""torch handlers for the quantization recipes."""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from ...errors import UnsupportedError
from ...recipes import ApplyContext, register_handler
from ...recipes.layers import excluded_layers
from ...recipes.quantization import Int4WeightOnly, Int8Dynamic, Int8Static, Int8WeightOnly, Qat
from .attention import split_attention
from .handle import TorchModel

DYNAMIC_TARGETS = (nn.Linear, nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell, nn.RNNCell)
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.LSTM, nn.GRU, nn.Embedding)


def resolve_engine(requested: str, context: ApplyContext, recipe: str) -> str:
    """`auto` → the engine the device profile recommends; anything else must be supported by this torch."""
    if requested == "auto":
        from ...profiling.device import device

        profile = context.device or device(measure=False)
        engine = profile.recommended_quantized_engine
    else:
        engine = requested
    supported = supported_engines()
    if engine not in supported:
        raise UnsupportedError(recipe, f"quantized engine {engine!r} is not built into this torch "
                                       f"(available: {', '.join(supported)})")
    return engine


def supported_engines() -> list[str]:
    """The quantized engines built into this torch."""
    return [e for e in torch.backends.quantized.supported_engines if e != "none"]


@contextlib.contextmanager
def quantized_engine(engine: str) -> Iterator[None]:
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantized tensor creation.*")
            yield
    finally:
        torch.backends.quantized.engine = previous


#: modules that compute nothing at inference: not layers in the per-layer view, nor things to exclude
PASS_THROUGH = (nn.Dropout, nn.Identity)


def leaf_layers(module: nn.Module) -> list[str]:
    """Names of the modules that compute (no children, not a pass-through), in definition order."""
    return [name for name, m in module.named_modules()
            if name and not any(True for _ in m.children()) and not isinstance(m, PASS_THROUGH)]


def layer_census(module: nn.Module, kinds: tuple[type, ...]) -> dict[str, list[str]]:
    """Names of the layers of each type in `kinds` (for messages that name the model part)."""
    census: dict[str, list[str]] = {}
    for name, child in module.named_modules():
        if isinstance(child, kinds):
            census.setdefault(type(child).__name__, []).append(name)
    return census


@register_handler(Int8Dynamic, "torch")
def int8_dynamic(recipe: Int8Dynamic, handle: TorchModel, context: ApplyContext) -> TorchModel:
    spec = recipe.to_spec()
    if handle.device.startswith("cuda") and not recipe.exclude and recipe.engine == "auto":
        from .gpu import int8_dynamic_cuda

        return int8_dynamic_cuda(spec, handle)
    _require_cpu_float(spec, handle)
    attention = layer_census(handle.payload, (nn.MultiheadAttention,)).get("MultiheadAttention", [])
    targets = _dynamic_targets(handle.payload)
    if not targets and not attention:
        found = layer_census(handle.payload, WEIGHT_LAYERS)
        have = ", ".join(f"{len(v)} {k}" for k, v in found.items()) or "no weight layers"
        raise UnsupportedError(spec, f"it quantizes nn.Linear / LSTM / GRU / MultiheadAttention layers and this "
                                     f"model has none ({have}); use int8-static for convolutions")
    engine = resolve_engine(recipe.engine, context, spec)
    qconfig = (torch.ao.quantization.per_channel_dynamic_qconfig if recipe.per_channel is True
               else torch.ao.quantization.default_dynamic_qconfig)
    names = [n for layers in targets.values() for n in layers] + attention
    names.sort(key=list(dict(handle.payload.named_modules())).index)
    skip = excluded_layers(spec, recipe.exclude, names) if recipe.exclude else set()
    module = copy.deepcopy(handle.payload)
    split = [n for n in attention if n not in skip and _splittable(module.get_submodule(n))]
    chosen = tuple(n for n in names if n not in skip and (n not in attention or n in split))
    split_attention(module, split)
    per_layer = [f"{n}.{p}" for n in split for p in ("q_proj", "k_proj", "v_proj", "out_proj")]
    per_layer += [n for n in chosen if n not in split]
    with quantized_engine(engine):
        quantized = torch.ao.quantization.quantize_dynamic(
            module, {n: qconfig for n in per_layer}, dtype=torch.qint8, inplace=True)
    fast_path_off = _transformer_fast_path_off(quantized)
    notes = list(handle.notes)
    if skip:
        notes.append(f"{spec}: kept in fp32 by exclude=: {', '.join(n for n in names if n in skip)}")
    kept = [n for n in attention if n not in skip and n not in split]
    if kept:
        notes.append(f"{spec}: MultiheadAttention {', '.join(repr(n) for n in kept)} stay fp32 (add_bias_kv / "
                     "add_zero_attn: no split form)")
    if split:
        notes.append(f"{spec}: {len(split)} MultiheadAttention layer(s) run their Q, K, V and output projections "
                     "as separate int8 Linear layers; the attention itself "
                     "(softmax(QK^T)V) stays fp32"
                     + (f"; the float fast path of {fast_path_off} TransformerEncoderLayer(s) is off (it needs "
                        "float weights)" if fast_path_off else ""))
    others = layer_census(handle.payload, tuple(t for t in WEIGHT_LAYERS if t not in DYNAMIC_TARGETS))
    if others:
        rest = ", ".join(f"{len(v)} {k}" for k, v in others.items())
        notes.append(f"{spec}: quantized {len(chosen)} Linear/RNN/attention layer(s); {rest} stay fp32 "
                     "(int8-static covers convolutions)")
    notes.append(f"{spec}: engine {engine}, activations quantized per batch with reduce_range (7-bit), "
                 f"weights per-{'channel' if recipe.per_channel is True else 'tensor'}")
    return handle.evolve(payload=quantized, precision="int8" if chosen else handle.precision, engine=engine,
                         flops_module=_float_graph(handle), notes=tuple(notes), changed_layers=chosen)


def _dynamic_targets(module: nn.Module) -> dict[str, list[str]]:
    """The layers dynamic quantization swaps, by kind. The output projection of an nn.MultiheadAttention
    (`NonDynamicallyQuantizableLinear`) is not one: the attention reads its weight as a tensor."""
    targets = layer_census(module, DYNAMIC_TARGETS)
    inside = {n for n, m in module.named_modules()
              if isinstance(m, torch.nn.modules.linear.NonDynamicallyQuantizableLinear)}
    targets = {k: [n for n in v if n not in inside] for k, v in targets.items()}
    return {k: v for k, v in targets.items() if v}


def _splittable(attention: nn.MultiheadAttention) -> bool:
    return attention.bias_k is None and not attention.add_zero_attn


def _transformer_fast_path_off(module: nn.Module) -> int:
    """Turn off the inference fast path (one fused float kernel that reads every weight as a tensor) of
    TransformerEncoderLayers with quantized parts, and of the encoders holding them. Returns how many layers."""
    count = 0
    for child in module.modules():
        if isinstance(child, nn.TransformerEncoderLayer) and any(
                type(m).__module__.startswith("torch.ao.nn") for m in child.modules()):
            child.activation_relu_or_gelu = 0  # the fast path's own switch; the slow path calls self.activation
            count += 1
        if isinstance(child, nn.TransformerEncoder):
            child.use_nested_tensor = False
    return count


# -- static, weight-only and quantization-aware ---------------------------------------------------------

STATIC_UNSUPPORTED = (nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell, nn.MultiheadAttention)


def _require_cpu_float(spec: str, handle: TorchModel) -> None:
    if handle.device != "cpu":
        raise UnsupportedError(spec, f"torch's int8 kernels (x86/fbgemm/qnnpack/onednn) run on the CPU; "
                                     f"this model is on {handle.device}")
    if handle.precision != "fp32":
        raise UnsupportedError(spec, f"it quantizes an fp32 model; this one is {handle.precision}")


def _kept_float(spec: str, handle: TorchModel, what: str) -> tuple[list[str], str | None]:
    """The layers static int8 has no kernel for (LSTM, GRU, MultiheadAttention), and the built-in torch.nn
    modules holding them (a TransformerEncoderLayer: FX does not trace into torch.nn modules): they stay float,
    the rest is quantized. Returns their names and a note; refuses a model where nothing else has weights."""
    module = handle.payload
    names = [n for n, m in module.named_modules() if isinstance(m, STATIC_UNSUPPORTED)]
    if not names:
        return [], None
    holders = [n for n, m in module.named_modules() if n and type(m).__module__.startswith("torch.nn.modules")
               and not isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict))
               and any(k.startswith(n + ".") for k in names)]
    kept = sorted(set(names) | set(holders), key=list(dict(module.named_modules())).index)
    kept = [n for n in kept if not any(n.startswith(k + ".") for k in kept)]  # outermost only
    rest = [n for n, m in module.named_modules() if isinstance(m, WEIGHT_LAYERS) and not _inside(n, kept)]
    census = layer_census(module, STATIC_UNSUPPORTED)
    listed = "; ".join(f"{kind} {', '.join(repr(n) for n in layers)}" for kind, layers in census.items())
    if not rest:
        raise UnsupportedError(spec, f"{what} has no int8 kernel for layer(s) {listed}, and the model has no other "
                                     "Conv / Linear layer; use int8-dynamic for recurrent and attention layers")
    shown = ", ".join(f"{type(module.get_submodule(n)).__name__} '{n}'" for n in kept)
    return kept, (f"{spec}: kept in fp32 (no {what} kernel for {listed}): {shown}; int8-dynamic quantizes "
                  "recurrent and attention layers")


def _inside(name: str, layers: list[str] | set[str]) -> bool:
    """Whether module `name` is one of `layers` or inside one of them."""
    return any(name == k or name.startswith(k + ".") for k in layers)


def _float_graph(handle: TorchModel) -> nn.Module:
    """The float model a quantized one came from: same layers, so the same FLOPs (torch cannot count int8 ops)."""
    return handle.flops_module or handle.eager_module


def _example(handle: TorchModel) -> tuple:
    x = handle.prepare(handle.example_input)
    return x if isinstance(x, tuple) else (x,)


def static_qconfig_mapping(engine: str, reduce_range: bool):
    """torch's default mapping for the engine, with per-channel weights and ISA-aware activation range."""
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import HistogramObserver, default_per_channel_weight_observer

    mapping = get_default_qconfig_mapping(engine)
    if engine in ("x86", "fbgemm", "onednn"):
        mapping.set_global(QConfig(activation=HistogramObserver.with_args(reduce_range=reduce_range),
                                   weight=default_per_channel_weight_observer))
    return mapping


def _trace_failure(spec: str, exc: Exception) -> UnsupportedError:
    return UnsupportedError(spec, f"torch.fx cannot trace this model ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:200]}); FX quantization needs a traceable forward")


@register_handler(Int8Static, "torch")
def int8_static(recipe: Int8Static, handle: TorchModel, context: ApplyContext) -> TorchModel:
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from ...profiling.device import device

    spec = recipe.to_spec()
    _require_cpu_float(spec, handle)
    floating, floating_note = _kept_float(spec, handle, "static int8")
    if context.task is None:
        raise UnsupportedError(spec, "it calibrates activation ranges on data: run it in a Study, whose task "
                                     "supplies the calibration samples")
    engine = resolve_engine(recipe.engine, context, spec)
    profile = context.device or device(measure=False)
    reduce_range = profile.int8_reduce_range and engine != "qnnpack"
    mapping = static_qconfig_mapping(engine, reduce_range)
    leaves = leaf_layers(handle.payload)
    skip = excluded_layers(spec, recipe.exclude, leaves) if recipe.exclude else set()
    for name in [*skip, *floating]:
        mapping.set_module_name(name, None)
    weighted = [n for n, m in handle.payload.named_modules() if isinstance(m, WEIGHT_LAYERS)
                and not _inside(n, [*skip, *floating])]
    if skip and not weighted:
        mapping.set_global(None)  # every layer kept: nothing between them is quantized either
    if not any(isinstance(m, WEIGHT_LAYERS) for m in handle.payload.modules()):
        exported = isinstance(handle.payload, torch.fx.GraphModule)
        raise UnsupportedError(spec, "the model has no Conv / Linear modules to quantize" + (
            " (an exported program's ATen graph calls its layers as functions): use to-onnx + int8-static"
            if exported else ""))
    with quantized_engine(engine):
        try:
            prepared = prepare_fx(copy.deepcopy(handle.payload).eval(), mapping, _example(handle))
        except Exception as exc:
            raise _trace_failure(spec, exc) from None
        samples = context.task.calibration(recipe.calibration)
        with torch.inference_mode():
            for start in range(0, len(samples), 64):
                prepared(handle.prepare(samples[start:start + 64]))
        quantized = convert_fx(prepared)
    notes = handle.notes + (
        f"{spec}: engine {engine}, per-channel int8 weights, activations "
        f"{'7-bit (reduce_range: no VNNI on this CPU)' if reduce_range else '8-bit'}, "
        f"calibrated on {len(samples)} sample(s) of {context.task.calibration_source}; Conv-BN-ReLU fused",)
    if skip:
        notes += (f"{spec}: kept in fp32 by exclude=: {', '.join(n for n in leaves if n in skip)}",)
    if floating_note:
        notes += (floating_note,)
    return handle.evolve(payload=quantized, precision="int8" if weighted else handle.precision, engine=engine,
                         flops_module=_float_graph(handle), fused=True, notes=notes, changed_layers=tuple(weighted))


@register_handler(Int8WeightOnly, "torch")
def int8_weight_only(recipe: Int8WeightOnly, handle: TorchModel, context: ApplyContext) -> TorchModel:
    spec = recipe.to_spec()
    if handle.precision != "fp32":
        raise UnsupportedError(spec, f"it quantizes an fp32 model; this one is {handle.precision}")
    linears = layer_census(handle.payload, (nn.Linear,))
    if not linears:
        found = layer_census(handle.payload, WEIGHT_LAYERS)
        have = ", ".join(f"{len(v)} {k}" for k, v in found.items()) or "no weight layers"
        raise UnsupportedError(spec, f"it quantizes nn.Linear layers and this model has none ({have})")
    from .torchao_quiet import Int8WeightOnlyConfig, quantize_

    module = copy.deepcopy(handle.payload)
    quantize_(module, Int8WeightOnlyConfig())
    notes = handle.notes + (f"{spec}: torchao int8 weights for {sum(map(len, linears.values()))} Linear layer(s), "
                            "dequantized in each matmul (saves memory traffic, not arithmetic)",)
    return handle.evolve(payload=module, precision="int8", notes=notes, flops_module=_float_graph(handle))


@register_handler(Int4WeightOnly, "torch")
def int4_weight_only(recipe: Int4WeightOnly, handle: TorchModel, context: ApplyContext) -> TorchModel:
    spec = recipe.to_spec()
    if handle.precision != "fp32" or handle.device != "cpu":
        raise UnsupportedError(spec, f"it quantizes an fp32 CPU model; this one is {handle.precision} on {handle.device}")
    linears = [(name, m) for name, m in handle.payload.named_modules() if isinstance(m, nn.Linear)]
    fits = {name for name, m in linears if m.in_features % recipe.group_size == 0 and m.out_features % 16 == 0}
    if not fits:
        shapes = ", ".join(f"{name} {m.in_features}→{m.out_features}" for name, m in linears[:4]) or "no Linear layers"
        raise UnsupportedError(spec, f"no Linear layer fits the int4 kernel (in_features a multiple of "
                                     f"{recipe.group_size}, out_features of 16): {shapes}")
    from .torchao_quiet import int4_weight_only_config, quantize_

    module = copy.deepcopy(handle.payload).to(torch.bfloat16)
    quantize_(module, int4_weight_only_config(recipe.group_size), filter_fn=lambda m, name: name in fits)
    kept = [name for name, _ in linears if name not in fits]
    notes = list(handle.notes) + [f"{spec}: torchao int4 weights (groups of {recipe.group_size}) for {len(fits)} "
                                  f"Linear layer(s); the model runs in bf16 (the CPU int4 kernel takes bf16)"]
    if kept:
        notes.append(f"{spec}: {len(kept)} Linear layer(s) stay bf16, their shape does not fit the kernel: "
                     f"{', '.join(kept[:5])}")
    return handle.evolve(payload=module, precision="int4", input_dtype=torch.bfloat16, notes=tuple(notes),
                         flops_module=_float_graph(handle))


def _qat_qconfig_mapping(engine: str):
    """torch's default QAT mapping for the engine, with embeddings fake-quantized the way their int8 kernels
    take them (per-row float scale and offset: the default per-channel symmetric weights are refused)."""
    from torch.ao.quantization import default_embedding_qat_qconfig, get_default_qat_qconfig_mapping

    mapping = get_default_qat_qconfig_mapping(engine)
    for kind in (nn.Embedding, nn.EmbeddingBag):
        mapping.set_object_type(kind, default_embedding_qat_qconfig)
    return mapping


@register_handler(Qat, "torch")
def qat(recipe: Qat, handle: TorchModel, context: ApplyContext) -> TorchModel:
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_qat_fx

    from ...tasks import training_data
    from .training import finetune

    spec = recipe.to_spec()
    _require_cpu_float(spec, handle)
    floating, floating_note = _kept_float(spec, handle, "quantization-aware training")
    if training_data(context.task) is None:
        raise UnsupportedError(spec, "it fine-tunes on labelled training data and this task has none; "
                                     "use int8-static (calibration only) instead")
    engine = resolve_engine(recipe.engine, context, spec)
    with quantized_engine(engine):
        try:
            mapping = _qat_qconfig_mapping(engine)
            for name in floating:
                mapping.set_module_name(name, None)
            prepared = prepare_qat_fx(copy.deepcopy(handle.payload).train(), mapping, _example(handle))
        except Exception as exc:
            raise _trace_failure(spec, exc) from None
        finetune(prepared, context.task, recipe.epochs, recipe.lr, context.seed, keep_zeros=True)
        quantized = convert_fx(prepared.eval())
    sparse = handle.weight_stats().sparsity
    notes = handle.notes + (f"{spec}: {recipe.epochs} epoch(s) of fake-quantized training, engine {engine}"
                            + (f"; zeros kept (sparsity {sparse:.2f} preserved)" if sparse > 0.01 else ""),)
    if floating_note:
        notes += (floating_note,)
    return handle.evolve(payload=quantized, precision="int8", engine=engine, flops_module=_float_graph(handle),
                         fused=True, notes=notes)
