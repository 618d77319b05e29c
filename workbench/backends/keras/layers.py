"""Per-layer probes for Keras models and their TFLite conversions.

Keras (functional / Sequential models): each layer's output from one sub-model over all layer outputs.
TFLite: the interpreter's preserved tensors (`experimental_preserve_all_tensors`, reference kernels: the
XNNPACK delegate hides what it fuses), int8 tensors dequantized with their own scale; each op is matched to the
Keras layers named in its output tensor's name (the converter writes `model/re_lu_1/Relu;model/conv2d_1/...`
for a fused Conv-BN-ReLU; Keras 3 suffixes `_1`, `_2` to names it traces, so a name is matched, in order, to the
next layer it can be).

Neither TensorFlow's graph runtime nor the LiteRT interpreter exposes a per-op profile to Python, so per-layer
times are measured on prefix models: the model cut after each layer (op) and timed like the whole; a layer's time
is its prefix's median over interleaved rounds less the previous prefix's, each round's time the fastest of 7
calls (scheduler noise only adds time). The whole model is timed the same way in the same rounds; where it and the
full-length prefix disagree, the machine was busy and the rounds are measured again.
"""

from __future__ import annotations

import copy
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..._native import quiet_native_stderr
from ...errors import UnsupportedError
from ...layerprobe import QDQ, LayerTime, LayerTimes, LayerTrace, rounds
from . import _tf

WEIGHTED = ("Conv", "Dense", "Embedding", "DepthwiseConv", "SeparableConv", "EinsumDense", "LSTM", "GRU")
QDQ_OPS = {"QUANTIZE", "DEQUANTIZE"}
INT8 = (np.int8, np.uint8, np.int16)


def _keras_layers(handle: Any) -> list[Any]:
    if handle.subclassed or not hasattr(handle.payload, "inputs"):
        raise UnsupportedError("per-layer view", "a subclassed Keras model has no layer graph to cut; "
                                                 "build it as a functional or Sequential model")
    return [layer for layer in handle.payload.layers if type(layer).__name__ not in ("InputLayer", "Dropout")]


def _trace_shape(handle: Any, layers: list[Any], outputs: dict[str, np.ndarray]) -> LayerTrace:
    names = [layer.name for layer in layers if layer.name in outputs]
    return LayerTrace(order=names, ops={layer.name: type(layer).__name__ for layer in layers}, outputs=outputs,
                      weighted={layer.name for layer in layers if any(w in type(layer).__name__ for w in WEIGHTED)},
                      leaves={layer.name for layer in layers})


def _sub_model(handle: Any, layers: list[Any]) -> Any:
    keras = __import__("tf_keras" if handle.flavor == "tf_keras" else "keras")
    return keras.Model(handle.payload.inputs, [layer.output for layer in layers])


def keras_trace(handle: Any, batch: Any) -> LayerTrace:
    layers = _keras_layers(handle)
    values = _sub_model(handle, layers)(handle.prepare(batch), training=False)
    outputs = {layer.name: np.asarray(v, dtype=np.float32) for layer, v in zip(layers, values)}
    return _trace_shape(handle, layers, outputs)


AGREEMENT = 0.2  # the full-length prefix and the whole model are the same graph: further apart than this is noise
ATTEMPTS = 3


def _prefix_times(runners: list[Callable[[], object]], whole: Callable[[], object], *, repeats: int,
                  min_seconds: float) -> tuple[list[float], float, int, tuple[int, float]]:
    """Per prefix, its median time over interleaved rounds; a layer's time is its prefix's median less the previous
    prefix's (the times add up to the full-length prefix's median, which a sum of medians of differences does not).

    The full-length prefix is the whole graph, so its median and the whole model's agree unless the machine was
    busy while one of them ran: then the rounds are measured again (up to ATTEMPTS), and the attempt where the two
    agree best is kept. Returns the layer times in ms, the whole model's median in ms, the rounds, and (the
    attempts, the kept attempt's gap)."""
    def timed(fn: Callable[[], object], calls: int = 7) -> float:
        samples = []  # the fastest of a few calls: scheduler noise only ever adds time
        for _ in range(calls):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        return min(samples) * 1000

    for fn in runners + [whole]:
        fn(), fn()
    best: tuple[float, list[float], float, int] | None = None
    attempts = 0
    while attempts < ATTEMPTS:
        attempts += 1
        cumulative: list[list[float]] = [[] for _ in runners]
        totals = []
        for _ in rounds(repeats, min_seconds, 200):
            for k, fn in enumerate(runners):
                cumulative[k].append(timed(fn))
            totals.append(timed(whole))
        medians = [statistics.median(c) for c in cumulative]
        total = statistics.median(totals)
        gap = abs(1 - medians[-1] / total) if medians else 0.0
        if best is None or gap < best[0]:
            best = (gap, medians, total, len(totals))
        if gap <= AGREEMENT:
            break
    gap, medians, total, n = best
    return [m - (medians[k - 1] if k else 0.0) for k, m in enumerate(medians)], total, n, (attempts, gap)


def _method(what: str, tries: tuple[int, float]) -> str:
    attempts, gap = tries
    again = (f"; measured {attempts} times: the full-length prefix and the whole model were {gap:.0%} apart at "
             "best (a busy machine, or per-call overhead the prefixes do not share)") if attempts > 1 else ""
    return (f"prefix models ({what}; a layer's time is its prefix's median less the previous one's), interleaved "
            f"with the whole model{again}")


def keras_times(handle: Any, batch: Any, threads: int | None = None, *, repeats: int = 7,
                min_seconds: float = 0.3) -> LayerTimes:
    tf = _tf.tf()
    layers = _keras_layers(handle)
    x = handle.prepare(batch)
    runners = []
    for layer in layers:
        model = _sub_model(handle, [layer])
        fn = tf.function(lambda v, m=model: m(v, training=False), reduce_retracing=True)
        runners.append(lambda fn=fn: fn(x))
    whole = handle.runner(batch)
    ms, total, n, attempts = _prefix_times(runners, whole, repeats=repeats, min_seconds=min_seconds)
    result = [LayerTime(layer.name, t, type(layer).__name__, "fp32") for layer, t in zip(layers, ms)]
    return LayerTimes(result, total, _method("the model cut after each layer, timed", attempts), n)


# -- TFLite --------------------------------------------------------------------------------------

def _candidates(segment: str) -> list[str]:
    """'conv2d_1_2' → ['conv2d_1_2', 'conv2d_1', 'conv2d']: the names Keras 3's tracing suffixes could hide."""
    out = [segment]
    while re.search(r"_\d+$", out[-1]):
        out.append(re.sub(r"_\d+$", "", out[-1]))
    return out


def op_layers(handle: Any) -> list[tuple[int, str, str, int]]:
    """(op index, op name, the Keras layer it ends in — or QDQ / '' —, its output tensor index) for every op."""
    from .litert import builtin_code, op_names, parse

    tree = parse(handle.payload)
    subgraph = tree.subgraphs[0]
    names = op_names()
    keras_layers = [layer.name for layer in _keras_layers(handle.source)] if handle.source is not None else []
    weighted = {layer.name for layer in _keras_layers(handle.source)
                if any(w in type(layer).__name__ for w in WEIGHTED)} if handle.source is not None else set()
    position = {name: i for i, name in enumerate(keras_layers)}
    last = -1
    out = []
    for index, op in enumerate(subgraph.operators or []):
        kind = names.get(builtin_code(tree, op), "CUSTOM")
        tensor = int(op.outputs[0])
        if kind in QDQ_OPS:
            out.append((index, kind, QDQ, tensor))
            continue
        text = (subgraph.tensors[tensor].name or b"").decode(errors="replace")
        matched = []
        for part in text.split(";"):
            for segment in part.split("/")[1:-1]:
                hits = [position[c] for c in _candidates(segment) if c in position and position[c] > last]
                if hits:
                    matched.append(min(hits))
        if matched:
            last = max(matched)
            out.append((index, kind, keras_layers[last], tensor))
            continue
        # no layer named (the converter's last op is often 'StatefulPartitionedCall:0'): the next layer, the next
        # one with weights for an op that has them
        wanted = kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL")
        following = [i for i in range(last + 1, len(keras_layers)) if not wanted or keras_layers[i] in weighted]
        if following:
            last = following[0]
            out.append((index, kind, keras_layers[last], tensor))
        else:
            out.append((index, kind, "", tensor))
    return out


def op_precisions(handle: Any) -> list[str]:
    """The precision each op ran in, from its tensors: int8 where an input or output is int8 (full-integer
    kernels, and dynamic-range kernels with int8 weights), else the float type of its output."""
    from .litert import parse, type_names

    subgraph = parse(handle.payload).subgraphs[0]
    names = type_names()
    out = []
    for op in subgraph.operators or []:
        types = {names.get(subgraph.tensors[int(i)].type, "") for i in list(op.inputs) + list(op.outputs) if int(i) >= 0}
        if types & {"INT8", "UINT8", "INT16"}:
            out.append("int8")
        else:
            out.append({"FLOAT16": "fp16"}.get(names.get(subgraph.tensors[int(op.outputs[0])].type, ""), "fp32"))
    return out


def lite_trace(handle: Any, batch: Any) -> LayerTrace:
    if handle.source is None:
        raise UnsupportedError("per-layer view", "a TFLite file with no Keras model to name its layers")
    lite = _tf.litert()
    x = handle.prepare(batch)
    with quiet_native_stderr():
        interpreter = lite.Interpreter(model_content=handle.payload, num_threads=1,
                                       experimental_op_resolver_type=lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                                       experimental_preserve_all_tensors=True)
        interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], list(x.shape), strict=False)
        interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    outputs: dict[str, np.ndarray] = {}
    for _, _, layer, tensor in op_layers(handle):
        if not layer or layer == QDQ:
            continue
        value = interpreter.get_tensor(tensor)
        detail = details[tensor]
        if value.dtype in INT8:
            scale, zero = detail["quantization"]
            value = (value.astype(np.float32) - zero) * scale
        outputs[layer] = np.asarray(value, dtype=np.float32)  # the last op of a layer wins: its output
    layers = _keras_layers(handle.source)
    return _trace_shape(handle.source, layers, outputs)


def _truncated(payload: bytes, ops: int) -> bytes:
    """The model cut after its first `ops` operators, whose last output becomes the model's output."""
    from ai_edge_litert.tools import flatbuffer_utils

    from .litert import parse

    tree = copy.deepcopy(parse(payload))
    subgraph = tree.subgraphs[0]
    subgraph.operators = subgraph.operators[:ops]
    subgraph.outputs = np.array([int(subgraph.operators[-1].outputs[0])], dtype=np.int32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))


def lite_times(handle: Any, batch: Any, threads: int | None = None, *, repeats: int = 7,
               min_seconds: float = 0.3) -> LayerTimes:
    from .litert import LiteModel

    mapping = op_layers(handle)
    runners = []
    with handle.session(threads):
        for index, _, _, _ in mapping:
            cut = LiteModel(_truncated(handle.payload, index + 1), handle.source, precision=handle.precision,
                            xnnpack=handle.xnnpack)
            with cut.session(threads):
                runners.append(cut.runner(batch))
        whole = handle.runner(batch)
    ms, total, n, attempts = _prefix_times(runners, whole, repeats=repeats, min_seconds=min_seconds)
    result = []
    precisions = op_precisions(handle)
    for (index, kind, layer, _), t in zip(mapping, ms):
        result.append(LayerTime(layer or "(graph root)", t, kind, precisions[index]))
    return LayerTimes(result, total, _method("the flatbuffer cut after each op, timed in LiteRT", attempts), n)
