"""ExecuTorch: torch.export → an ExecuTorch program with the XNNPACK delegate, run in ExecuTorch's runtime."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from ...errors import UnsupportedError
from ...model import ModelHandle, WeightStats
from ...recipes import ApplyContext, register_handler
from ...recipes.fusion import ExecuTorch
from .handle import TorchModel, quiet_native_stderr, to_numpy

MAX_BATCH = 4096
EXPORT_BATCH = 32


class ExecuTorchModel(ModelHandle):
    """A serialized ExecuTorch program (.pte bytes) and its loaded `forward` method."""

    framework = "torch"
    format = "executorch"
    runtime = "executorch"

    def __init__(self, program: bytes, source: TorchModel):
        from executorch.runtime import Runtime

        self.payload = program
        self.source = source  # the eager model it was exported from (weight statistics, FLOPs)
        with quiet_native_stderr():  # the runtime logs its CPU probing on stderr
            self.method = Runtime.get().load_program(program).load_method("forward")
        self.example_input = source.example_input
        self.precision, self.fused, self.engine = source.precision, True, "xnnpack"

    def prepare(self, batch: Any) -> list:
        x = self.source.prepare(batch)
        return [t.contiguous() for t in (x if isinstance(x, tuple) else (x,))]

    def predict(self, batch: Any) -> np.ndarray:
        return to_numpy(self.method.execute(self.prepare(batch)))

    def runner(self, batch: Any) -> Callable[[], object]:
        inputs, execute = self.prepare(batch), self.method.execute
        return lambda: execute(inputs)

    @contextlib.contextmanager
    def session(self, threads: int | None = None) -> Iterator[None]:
        # XNNPACK's thread pool is sized by ExecuTorch itself; `threads` is recorded, not enforced here.
        yield

    def serialize(self) -> bytes:
        return self.payload

    def weight_stats(self) -> WeightStats:
        return self.source.weight_stats()



def _check_dynamic_batch(spec: str, program: ExecuTorchModel, args: tuple, exported: Any) -> None:
    """Run the program at a batch other than the export batch: ExecuTorch's memory plan can fix a tensor the
    graph builds (an RNN's zero initial state) at the export batch, and then refuses any other batch."""
    probe = tuple(a[:3] for a in args)
    try:
        with quiet_native_stderr():
            program.method.execute([t.contiguous() for t in probe])
    except Exception:
        built = sorted({_owner(node) for node in exported.graph.nodes
                        if node.op == "call_function" and any(k in str(node.target) for k in ("zeros", "full", "ones"))})
        where = f" (tensors built inside {', '.join(built)})" if built else ""
        raise UnsupportedError(spec, f"the ExecuTorch program runs only at the export batch of {len(args[0])}: its "
                                     f"memory plan fixes a tensor the graph builds{where}. Pass such a tensor in "
                                     "(e.g. an RNN's initial state) or export for one fixed batch") from None


def _owner(node: Any) -> str:
    """The module a graph node came from, as `Type 'name'` (the innermost of its nn_module_stack)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "the model's forward"
    path, kind = list(stack.values())[-1]
    kind = getattr(kind, "__name__", None) or str(kind).rsplit(".", 1)[-1].strip("'>")
    return f"{kind} '{path}'"


@register_handler(ExecuTorch, "torch")
def executorch(recipe: ExecuTorch, handle: TorchModel, context: ApplyContext) -> ModelHandle:
    spec = recipe.to_spec()
    if not isinstance(handle, TorchModel) or handle.runtime != "eager" or handle.device != "cpu":
        raise UnsupportedError(spec, "it exports an eager CPU model")
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        from . import torchao_quiet  # noqa: F401  (ExecuTorch imports torchao, which is chatty)
    except ImportError as exc:
        raise UnsupportedError(spec, f"ExecuTorch is not installed here ({exc}); install the mobile extra: "
                                     "pip install 'efficiency-workbench[mobile]' -c constraints.txt") from None
    # an example batch of several: torch.export specialises a batch of 1 and would refuse a dynamic batch axis
    example = handle.prepare(context.task.sample(EXPORT_BATCH) if context.task is not None
                              else np.concatenate([handle.example_input] * EXPORT_BATCH))
    args = example if isinstance(example, tuple) else (example,)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    try:
        exported = torch.export.export(handle.payload, args, dynamic_shapes=tuple({0: batch} for _ in args))
        program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
    except Exception as exc:
        raise UnsupportedError(spec, f"torch.export / ExecuTorch lowering failed ({type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0][:200]})") from None
    try:
        new = ExecuTorchModel(program.buffer, handle)
    except Exception as exc:  # the runtime has no kernel for an op the delegate left out
        left = sorted({str(node.target) for node in program.exported_program().graph.nodes
                       if node.op == "call_function" and str(node.target).startswith("aten.")})
        raise UnsupportedError(spec, f"ExecuTorch's runtime cannot load the program ({str(exc).splitlines()[0][:120]}); "
                                     f"ATen ops outside the XNNPACK delegate, one of which has no kernel here: "
                                     f"{', '.join(left) or 'none'}") from None
    _check_dynamic_batch(spec, new, args, exported)
    new.notes = handle.notes + (f"{spec}: XNNPACK delegate; threads are ExecuTorch's own; batch up to {MAX_BATCH}",)
    return new
