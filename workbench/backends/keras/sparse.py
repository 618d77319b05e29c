"""Will XNNPACK run this TFLite model's sparse path? Its documented conditions, checked on the flatbuffer.

TFLite's converter stores pruned weights sparse (`tf.lite.Optimize.EXPERIMENTAL_SPARSITY`: a DENSIFY op in
front of each such weight). The XNNPACK delegate then asks XNNPACK for sparse inference (Fast Sparse ConvNets,
arXiv:1911.09723), which rewrites part of the graph to NCHW with sparse 1x1 convolutions — only where all of
these hold (the delegate's README, "Sparse Inference", and XNNPACK's `xnn_check_nchw_compatibility`):

- the CPU: XNNPACK's sparse kernels are Arm NEON and x86 SSE; on an x86 CPU with AVX it expects its dense
  kernels to be faster and never takes the sparse path (`xnn_is_chw_compatible_config`);
- float32 operators, and weights stored sparse (DENSIFY);
- a 3x3 stride-2 CONV_2D on 3 input channels with padding 1 on each side begins the sparse subgraph, and a
  MEAN over the spatial axes (a global average pool) or DEPTH_TO_SPACE ends it;
- in between only 1x1 CONV_2D (stride 1, no padding), 3x3 / 5x5 DEPTHWISE_CONV_2D (stride 1 or 2, depth
  multiplier 1, padding 1 / 2 on each side), ADD, MUL, RESIZE_BILINEAR and the listed unary operators;
- at least 2/3 of the 1x1 convolutions' weights are zero.

Padding: XNNPACK turns TensorFlow's SAME padding into explicit padding only at stride 1; a stride-2 layer needs
`ZeroPadding2D(1)` + `padding='valid'` (a zero PAD it fuses into the convolution). The interpreter does not
report which path ran, so this is a prediction from the file; the on/off timing in `benchmarks/` is the check.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

UNARY = {"ABS", "CEIL", "ELU", "FLOOR", "HARD_SWISH", "LEAKY_RELU", "LOGISTIC", "NEG", "RELU", "RELU6",
         "RELU_N1_TO_1", "ROUND", "SQUARE"}
#: operators that may sit inside the sparse subgraph without conditions of their own (shapes aside)
PASS_THROUGH = UNARY | {"ADD", "MUL", "RESIZE_BILINEAR", "DENSIFY"}
ENDS = {"MEAN", "DEPTH_TO_SPACE"}
MIN_ZERO_FRACTION = 2 / 3
SAME, VALID = 0, 1  # the schema's Padding enum


@dataclasses.dataclass(frozen=True)
class SparseCheck:
    """What the flatbuffer and the CPU say about XNNPACK's sparse path."""

    sparse_weights: int                 # weights stored sparse (DENSIFY ops)
    zero_fraction: float | None         # zeros among the 1x1 convolutions' weights (None: no 1x1 convolution)
    model_reasons: tuple[str, ...]      # what in the model keeps XNNPACK off its sparse path
    cpu_reason: str | None              # why this CPU never takes it (x86 with AVX), None where it can

    @property
    def expected(self) -> bool:
        return not self.model_reasons and self.cpu_reason is None

    @property
    def verdict(self) -> str:
        return "expected" if self.expected else "declined"

    def summary(self) -> str:
        if self.expected:
            return (f"XNNPACK's sparse path is expected: {self.sparse_weights} weight(s) stored sparse, "
                    f"{self.zero_fraction:.0%} of the 1x1 convolutions' weights zero, and the graph and the CPU meet "
                    "its conditions (the interpreter does not report the path it ran)")
        reasons = list(self.model_reasons) + ([self.cpu_reason] if self.cpu_reason else [])
        return "XNNPACK declines its sparse path: " + "; ".join(reasons)


def cpu_reason(profile: Any) -> str | None:
    """Why XNNPACK never runs sparse kernels on this CPU, or None where it may (Arm; x86 without AVX)."""
    if profile.arch in ("x86_64", "AMD64", "i386", "i686", "x86") and profile.has("avx"):
        return (f"its sparse kernels are SSE-only on x86, so on an AVX CPU ({profile.cpu_model}) it runs its dense "
                "kernels, which it expects to be faster; the sparse path runs on Arm (phones, Jetson, Graviton)")
    return None


def check(model: bytes, profile: Any) -> SparseCheck:
    from .litert import builtin_code, constant_tensors, ints, op_names, parse, type_names

    tree = parse(model)
    graph = tree.subgraphs[0]
    codes = op_names()
    ops = [(i, codes.get(builtin_code(tree, op), "CUSTOM"), op) for i, op in enumerate(graph.operators or [])]
    densified = {int(op.outputs[0]): int(op.inputs[0]) for _, name, op in ops if name == "DENSIFY"}
    tensors = graph.tensors
    values = {id(t): v for t, v in constant_tensors(tree)}
    types = type_names()
    reasons: list[str] = []
    if not densified:
        reasons.append("no weight is stored sparse (no DENSIFY op): the converter encodes weights that are at "
                       "least 30% zero — prune first, e.g. 'prune(0.8) + tflite(sparse=true)'")
    kinds = {types.get(tensors[int(t)].type, "?") for _, name, op in ops if name in ("CONV_2D", "DEPTHWISE_CONV_2D")
             for t in op.inputs[:1]}
    if kinds - {"FLOAT32"}:
        reasons.append(f"its convolutions run in {'/'.join(sorted(kinds - {'FLOAT32'})).lower()}; the sparse path "
                       "is float32 only (convert the pruned float model: 'prune(0.8) + tflite(sparse=true)')")

    def shape(index: int) -> list[int]:
        return ints(tensors[index].shape)

    def zero_padding(op: Any) -> tuple[int, int, int, int] | None:
        """(top, bottom, left, right) of a zero PAD on H and W only, else None."""
        pads = values.get(id(tensors[int(op.inputs[1])]))
        if pads is None or len(op.inputs) > 2 or np.asarray(pads).shape != (4, 2) or pads[0].any() or pads[3].any():
            return None
        return int(pads[1][0]), int(pads[1][1]), int(pads[2][0]), int(pads[2][1])

    producer = {int(out): (i, name, op) for i, name, op in ops for out in op.outputs}

    def padding(op: Any, options: Any, kernel: int) -> tuple[int, ...] | str:
        """The explicit padding XNNPACK sees, or why it is TensorFlow's SAME left to run time."""
        stride = options.strideH, options.strideW
        if options.padding == SAME:
            if stride == (1, 1):
                half = (kernel - 1) // 2
                return half, kernel - 1 - half, half, kernel - 1 - half
            return "padding='same' at stride 2 (use ZeroPadding2D + padding='valid')"
        before = producer.get(int(op.inputs[0]))
        if before and before[1] == "PAD":
            return zero_padding(before[2]) or "a PAD that is not zero padding of H and W"
        return 0, 0, 0, 0

    def kernel_of(op: Any) -> tuple[int, int, int]:
        """(kh, kw, input channels) of a convolution's filter (OHWI)."""
        filt = shape(int(op.inputs[1]))
        return (filt[1], filt[2], filt[3]) if len(filt) == 4 else (0, 0, 0)

    stem, first = None, ""
    for i, name, op in ops:
        if name != "CONV_2D":
            continue
        kh, kw, cin = kernel_of(op)
        options = op.builtinOptions
        pad = padding(op, options, kh)
        problems = []
        if (kh, kw) != (3, 3):
            problems.append(f"a {kh}x{kw} kernel")
        if (options.strideH, options.strideW) != (2, 2):
            problems.append(f"stride {options.strideH}")
        if cin != 3:
            problems.append(f"{cin} input channel(s)")
        if isinstance(pad, str):
            problems.append(pad)
        elif pad != (1, 1, 1, 1):
            problems.append(f"padding {pad} (top, bottom, left, right)")
        if (options.dilationHFactor, options.dilationWFactor) != (1, 1):
            problems.append("dilation")
        if not problems:
            stem = i
            break
        first = first or f"the first convolution (op {i}) has {', '.join(problems)}"
    if stem is None:
        reasons.append(f"{first or 'there is no CONV_2D'}: the sparse subgraph must start with a 3x3 stride-2 CONV_2D "
                       "on 3 input channels with padding 1 on each side (an RGB stem: ZeroPadding2D(1) + "
                       "Conv2D(filters, 3, strides=2, padding='valid'))")
    zeros = total = 0
    if stem is not None:
        end = None
        for i, name, op in ops[stem + 1:]:
            if name in ENDS:
                if name == "DEPTH_TO_SPACE" or sorted(ints(values.get(id(tensors[int(op.inputs[1])]), []))) == [1, 2]:
                    end = i
                    break
                reasons.append(f"MEAN (op {i}) reduces other axes than H and W")
                break
            problem = _inside(name, op, shape, padding, kernel_of)
            if problem:
                reasons.append(f"{name} (op {i}) {problem}")
            if name == "CONV_2D" and kernel_of(op)[:2] == (1, 1):
                weight = int(op.inputs[1])
                dense = int(np.prod(shape(weight)))
                stored = values.get(id(tensors[densified.get(weight, weight)]))
                # a sparse tensor stores its non-zero values only (block size 1); a dense one, all of them
                nonzero = dense if stored is None else stored.size if weight in densified else np.count_nonzero(stored)
                zeros += dense - int(nonzero)
                total += dense
        if end is None:
            reasons.append("no MEAN over H and W (a global average pool) or DEPTH_TO_SPACE ends the sparse subgraph")
    fraction = zeros / total if total else None
    if fraction is not None and fraction < MIN_ZERO_FRACTION:
        reasons.append(f"only {fraction:.0%} of the 1x1 convolutions' weights are zero; XNNPACK needs at least 2/3 "
                       "(prune to 0.7 or more)")
    return SparseCheck(len(densified), fraction, tuple(dict.fromkeys(reasons)), cpu_reason(profile))


def _inside(name: str, op: Any, shape: Any, padding: Any, kernel_of: Any) -> str | None:
    """Why an operator breaks the sparse subgraph, or None where XNNPACK takes it in NCHW."""
    if name == "PAD":
        return None  # a zero PAD is fused into the convolution after it (checked there)
    if name in PASS_THROUGH:
        dims = [len(shape(int(t))) for t in op.inputs if int(t) >= 0]
        return None if name in ("DENSIFY", "RESIZE_BILINEAR") or all(d in (0, 1, 4) for d in dims) else \
            "has inputs that are not 4-D"
    options = op.builtinOptions
    if name == "CONV_2D":
        kh, kw, _ = kernel_of(op)
        if (kh, kw) != (1, 1):
            return f"is a {kh}x{kw} convolution; inside the sparse subgraph only 1x1 ones (and depthwise) run"
        if (options.strideH, options.strideW) != (1, 1):
            return "is a 1x1 convolution with stride 2; the sparse path takes stride 1 only"
        return None
    if name == "DEPTHWISE_CONV_2D":
        kh, kw = shape(int(op.inputs[1]))[1:3]
        if kh != kw or kh not in (3, 5):
            return f"has a {kh}x{kw} kernel; the sparse path takes 3x3 and 5x5"
        if options.strideH != options.strideW or options.strideH not in (1, 2):
            return f"has stride {options.strideH}x{options.strideW}; the sparse path takes 1 or 2"
        if options.depthMultiplier != 1:
            return f"has depth multiplier {options.depthMultiplier}; the sparse path takes 1"
        pad = padding(op, options, kh)
        if isinstance(pad, str):
            return f"has {pad}"
        if pad != (kh // 2,) * 4:
            return f"has padding {pad}; the sparse path takes {kh // 2} on each side"
        return None
    return "is not in XNNPACK's sparse operator set (1x1 and depthwise convolutions, ADD, MUL, resize, unary ops)"
