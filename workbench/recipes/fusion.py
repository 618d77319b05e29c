"""Graph, fusion and compilation recipes (configs only; framework handlers live in workbench.backends)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Recipe, check_choice, register_recipe


@register_recipe
@dataclass(frozen=True)
class FoldBatchNorm(Recipe):
    """Fold each BatchNorm into the convolution before it (inference only; exact up to rounding)."""

    name = "fold-bn"
    kind = "graph"
    formats = ("torch",)
    summary = "fold BatchNorm into the preceding convolution"


@register_recipe
@dataclass(frozen=True)
class Fuse(Recipe):
    """Module fusion of Conv-BN-ReLU (and Linear-ReLU) into single fused modules (torch.ao fuse_fx)."""

    name = "fuse"
    kind = "graph"
    formats = ("torch",)
    summary = "fuse Conv-BN-ReLU / Linear-ReLU into fused modules"


@register_recipe
@dataclass(frozen=True)
class ChannelsLast(Recipe):
    """NHWC memory layout for 4-D activations and conv weights (what oneDNN and tensor cores prefer)."""

    name = "channels-last"
    kind = "graph"
    formats = ("torch",)
    summary = "NHWC memory format for convolutions"


@register_recipe
@dataclass(frozen=True)
class CudnnBenchmark(Recipe):
    """cuDNN autotuning (`torch.backends.cudnn.benchmark`): the first call at each input shape times cuDNN's
    convolution algorithms and keeps the fastest, so that call is slower (`first_call_ms`) and later ones may be
    faster. CUDA models with convolutions only."""

    name = "cudnn-benchmark"
    kind = "graph"
    formats = ("torch",)
    summary = "cuDNN convolution-algorithm autotuning (CUDA only)"


@register_recipe
@dataclass(frozen=True)
class TorchScript(Recipe):
    """TorchScript (trace or script), frozen and optimized for inference."""

    name = "torchscript"
    kind = "runtime"
    formats = ("torch",)
    summary = "TorchScript trace/script + freeze + optimize_for_inference"

    mode: str = "trace"
    freeze: bool = True

    def validate(self) -> None:
        check_choice(self.name, "mode", self.mode, ("trace", "script"))


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@register_recipe
@dataclass(frozen=True)
class Compile(Recipe):
    """torch.compile (Inductor). Compile time is the trial's first-call time, apart from steady state."""

    name = "compile"
    kind = "runtime"
    formats = ("torch",)
    summary = "torch.compile with Inductor (compile time reported as first call)"

    mode: str = "default"

    def validate(self) -> None:
        check_choice(self.name, "mode", self.mode, COMPILE_MODES)


@register_recipe
@dataclass(frozen=True)
class ExecuTorch(Recipe):
    """Export through torch.export to an ExecuTorch program (XNNPACK delegate) and run it in ExecuTorch's runtime."""

    name = "executorch"
    kind = "runtime"
    formats = ("torch",)
    summary = "ExecuTorch program with the XNNPACK delegate (mobile runtime)"

    def conflicts_with(self, earlier):
        quantized = next((s for s in earlier if s.kind == "precision" and s.name.startswith(("int8", "qat"))), None)
        if quantized is not None:
            return (f"ExecuTorch lowers a float model with torch.export; {quantized.to_spec()} makes torch.ao "
                    "quantized modules it cannot lower: run executorch on the float model")
        return super().conflicts_with(earlier)
