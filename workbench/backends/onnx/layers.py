"""Per-layer probes for ONNX Runtime models.

Layers are the torch modules a graph was exported from: the dynamo exporter records each node's module scopes
(`pkg.torch.onnx.name_scopes`), the TorchScript exporter names each node by its module path
(`/encoder/layer.0/attention/self/query/MatMul`); a graph with neither (an ONNX file given as such) has one
layer per node.
ONNX Runtime's quantizer names the nodes it adds after the nodes and tensors they replace, so the map is taken
from the graph before quantization and carried (`OrtModel.layer_map`); a quantized node belongs to the layer
whose node or tensor name is the longest prefix of its own.

`layer_trace`: each layer's output tensor exposed as a graph output. `layer_times`: ONNX Runtime's session
profile (one event per node and run, with the kernel that ran), medians over the runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import tempfile
from typing import Any

import numpy as np

from ...layerprobe import QDQ, LayerTime, LayerTimes, LayerTrace, kernel_precision, rounds

SCOPES = "pkg.torch.onnx.name_scopes"
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
WEIGHT_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Gather", "LSTM", "GRU", "Attention"}
#: the ops ONNX Runtime's quantizers change (what exclude= is checked against)
QUANTIZABLE_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Attention", "LSTM", "GRU"}


@dataclasses.dataclass(frozen=True)
class LayerMap:
    order: tuple[str, ...]                  # layers in graph order of their first node
    owner: dict[str, str]                   # node or tensor name -> innermost layer ('' for the graph's root)
    scopes: dict[str, tuple[str, ...]]      # node name -> every layer it is inside (outermost first)
    outputs: dict[str, str]                 # layer -> the tensor it returns (the last one its nodes make)
    ops: dict[str, str]                     # layer -> op types of its nodes, joined
    weighted: frozenset[str]                # layers with a weight op (Conv, MatMul, Gemm, Gather, ...)
    quantizable: dict[str, tuple[str, ...]]  # layer -> its nodes that ONNX Runtime's quantizers change


def layer_map(payload: bytes) -> LayerMap:
    import onnx

    graph = onnx.load_from_string(payload).graph
    weights = {init.name for init in graph.initializer}
    order: list[str] = []
    owner: dict[str, str] = {}
    scopes: dict[str, tuple[str, ...]] = {}
    outputs: dict[str, str] = {}
    ops: dict[str, list[str]] = {}
    weighted: set[str] = set()
    quantizable: dict[str, list[str]] = {}
    open_scopes: set[str] = set()
    closed: set[str] = set()
    for node in graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        if SCOPES in meta:
            path = [s for s in _scope_list(meta[SCOPES])[:-1] if s and not s.startswith("_")]  # last: the op
        elif node.name.startswith("/"):
            path = _module_path(node.name)
        else:
            path = [node.name or node.output[0]]
        layer = path[-1] if path else ""
        scopes[node.name] = tuple(path)
        owner[node.name] = layer
        for out in node.output:
            if out:
                owner[out] = layer
        for left in open_scopes - set(path):
            closed.add(left)  # a module called again later (a shared ReLU) keeps its first call's output
        open_scopes = set(path)
        for enclosing in path:  # a layer returns the last tensor made inside it
            if node.output and node.output[0] and enclosing not in closed:
                outputs[enclosing] = node.output[0]
        if not layer:
            continue
        if layer not in ops:
            order.append(layer)
        ops.setdefault(layer, [])
        if node.op_type not in ops[layer]:
            ops[layer].append(node.op_type)
        if node.op_type in WEIGHT_OPS and any(i in weights for i in node.input):
            weighted.add(layer)
        if node.op_type in QUANTIZABLE_OPS:
            quantizable.setdefault(layer, []).append(node.name)
    return LayerMap(tuple(order), owner, scopes, outputs, {k: "+".join(v) for k, v in ops.items()},
                    frozenset(weighted), {k: tuple(v) for k, v in quantizable.items()})


def _module_path(node_name: str) -> list[str]:
    """The TorchScript exporter's node name → the modules it is inside, outermost first, as torch names them
    ("/encoder/layer.0/attention/MatMul_1" → ["encoder", "encoder.layer.0", "encoder.layer.0.attention"])."""
    parts = [p for p in node_name.strip("/").split("/")[:-1] if p]  # last: the op
    return [".".join(parts[:i + 1]) for i in range(len(parts))]


def _scope_list(text: str) -> list[str]:
    """The exporter writes the scopes as a Python list literal (JSON in some versions)."""
    import ast

    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = json.loads(text)
    return [str(v) for v in value]


def nodes_in(layers: set[str], mapping: LayerMap) -> list[str]:
    """The nodes inside any of `layers` (what ONNX Runtime's quantizers take as nodes_to_exclude), with the
    names the quantizer gives the MatMul it splits a Gemm into (`<gemm>_MatMul`)."""
    nodes = [node for node, path in mapping.scopes.items() if layers & set(path)]
    return nodes + [f"{node}_MatMul" for node in nodes]


def _owner(name: str, mapping: LayerMap) -> str:
    """The layer a (possibly quantizer- or optimizer-made) node or tensor name belongs to: the longest known
    node or tensor name it starts with."""
    if name in mapping.owner:
        return mapping.owner[name]
    best = ""
    for known in mapping.owner:
        if len(known) > len(best) and name.startswith(known):
            best = known
    return mapping.owner.get(best, "") if best else ""


def layer_trace(handle: Any, batch: Any) -> LayerTrace:
    import onnx
    import onnxruntime as ort

    from .handle import LEVELS

    mapping = handle.layer_map
    model = onnx.load_from_string(handle.payload)
    model = onnx.shape_inference.infer_shapes(model)
    known = {v.name: v for v in list(model.graph.value_info) + list(model.graph.output)}
    present = {o for node in model.graph.node for o in node.output}
    graph_outputs = {o.name for o in model.graph.output}
    after_qdq = _dequantized(model.graph)
    wanted = {}
    for layer in mapping.order:
        tensor = mapping.outputs.get(layer)
        tensor = after_qdq.get(tensor, tensor)
        info = known.get(tensor)
        if tensor in present and info is not None and info.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            wanted[layer] = tensor
    for tensor in wanted.values():
        if tensor not in graph_outputs:
            model.graph.output.append(known[tensor])
            graph_outputs.add(tensor)
    options = ort.SessionOptions()
    options.graph_optimization_level = LEVELS[handle.level]
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(None, handle.prepare(batch))))
    outputs = {layer: np.asarray(values[t], dtype=np.float32) for layer, t in wanted.items() if t in values}
    order = [layer for layer in mapping.order if layer in outputs]
    return LayerTrace(order=_finish_order(order, mapping), ops=dict(mapping.ops), outputs=outputs,
                      weighted=set(mapping.weighted), leaves=_leaves(mapping))


def _dequantized(graph: Any) -> dict[str, str]:
    """tensor → the DequantizeLinear output after its QuantizeLinear, in QDQ graphs: the value the next layer
    sees (the quantizer drops a ReLU that the quantization's range already clips, so the tensor before it is
    not the layer's output)."""
    quantized = {n.input[0]: n.output[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    dequantized = {n.input[0]: n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    return {t: dequantized[q] for t, q in quantized.items() if q in dequantized}


def _finish_order(layers: list[str], mapping: LayerMap) -> list[str]:
    """Layers in the order they finish (an enclosing layer after the layers inside it)."""
    last: dict[str, int] = {}
    for i, path in enumerate(mapping.scopes.values()):
        for layer in path:
            last[layer] = i
    return sorted(layers, key=lambda layer: (last.get(layer, -1), -len(layer)))


def _leaves(mapping: LayerMap) -> set[str]:
    parents = {p for path in mapping.scopes.values() for p in path[:-1]}
    return {layer for layer in mapping.order if layer not in parents}


def layer_times(handle: Any, batch: Any, threads: int | None = None, *, repeats: int = 10,
                min_seconds: float = 0.3) -> LayerTimes:
    import time

    import onnxruntime as ort

    from .handle import LEVELS

    mapping = handle.layer_map
    with tempfile.TemporaryDirectory(prefix="wb-ort-profile-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = LEVELS[handle.level]
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "profile")
        session = ort.InferenceSession(handle.payload, options, providers=["CPUExecutionProvider"])
        feed = handle.prepare(batch)
        for _ in range(3):
            session.run(None, feed)
        totals = []
        for _ in rounds(repeats, min_seconds, 500):
            start = time.perf_counter()  # the wall time of the same runs the nodes are profiled in (a second
            session.run(None, feed)      # session interleaved would fight this one's spinning threads)
            totals.append(time.perf_counter() - start)
        n = len(totals)
        with open(session.end_profiling()) as f:
            events = json.load(f)
    per_node: dict[str, list[float]] = {}
    ops: dict[str, str] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            node = e["name"][: -len("_kernel_time")]
            per_node.setdefault(node, []).append(e["dur"])
            ops[node] = e.get("args", {}).get("op_name", "")
    by_layer: dict[str, list[tuple[float, str]]] = {}
    for node, durations in per_node.items():
        ms = statistics.median(durations[-n:]) / 1000
        op = ops[node]
        layer = QDQ if op in QDQ_OPS else (_owner(node, mapping) or "(graph root)")
        by_layer.setdefault(layer, []).append((ms, op))
    result = []
    for layer, parts in by_layer.items():
        kernel = max(parts)[1]
        precision = "int8" if any(kernel_precision(op) == "int8" for _, op in parts) else "fp32"
        result.append(LayerTime(layer, sum(ms for ms, _ in parts), kernel, precision))
    return LayerTimes(result, statistics.median(totals) * 1000,
                      "ONNX Runtime session profiling (per node, medians over the runs; latency: the same runs' wall time)", n)

