"""What this machine is and can do: CPU and ISA, cores, memory, GPUs, framework versions, quantized
engines, which precisions the hardware accelerates, and *measured* GEMM and memory-bandwidth peaks.

The static part is read each time (cheap, no framework import except torch for its quantized engines and
CUDA devices, when torch is installed); the measured peaks take ~2 s and are cached per machine
fingerprint under the workbench cache directory.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import platform
import warnings
from typing import Any

import numpy as np

from .._optional import version_of
from ..paths import cache_dir
from .timing import TimingConfig, measure_latency

#: ISA features that decide what runs fast; names as Linux /proc/cpuinfo spells them
ISA_FEATURES = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
    "asimd", "asimdhp", "asimddp", "bf16", "i8mm", "sve", "sve2",
)
#: every library whose version can change a measured answer (part of the device fingerprint, hence of every
#: trial's content address)
FRAMEWORKS = ("torch", "torchao", "torch-pruning", "executorch", "safetensors", "tensorflow", "keras", "tf-keras",
              "tensorflow-model-optimization", "ai-edge-litert", "tensorflowjs", "onnx", "onnxruntime", "onnxscript",
              "openvino", "nncf", "transformers", "tokenizers", "sentence-transformers", "numpy", "pandas",
              "scikit-learn", "scipy")
#: the precision a model's matrix multiplies run in, by the precision its rows report
COMPUTE_PRECISION = {"int8": "int8", "int8-dynamic": "int8", "bf16": "bf16", "int4": "bf16", "fp16": "fp16"}


def compute_precision(precision: str, pipeline: str = "") -> str:
    """The precision a model's matrix multiplies run in, from its row's `precision` and `pipeline`: weight-only
    int8 dequantizes inside each matmul (fp32), int4 computes in bf16, mixed precision in its low type."""
    if "int8-weight-only" in pipeline:
        return "fp32"
    return COMPUTE_PRECISION.get(str(precision).removeprefix("amp-"), "fp32")


#: a measured low-precision GEMM peak under this share of fp32's is reported as slower than fp32
SLOWER_THAN_FP32 = 0.8
#: the precisions whose GEMM peak is measured beside fp32
PEAK_PRECISIONS = ("int8", "bf16", "fp16")
#: how the cached peaks were measured: a profile cached with another value is measured again
#: (2: bf16 / fp16 through F.linear instead of torch.mm)
PEAKS_METHOD = 2
#: at most this long timing one measured peak (the calls timed by then give the median)
PEAK_MAX_TIME_S = 2.0


@dataclasses.dataclass(frozen=True)
class GPU:
    name: str
    compute_capability: str
    memory_bytes: int
    tensor_core_precisions: tuple[str, ...]
    sparse_tensor_cores: bool


@dataclasses.dataclass(frozen=True)
class DeviceProfile:
    cpu_model: str
    arch: str
    isa: tuple[str, ...]
    cores_physical: int
    cores_logical: int
    cores_available: int
    memory_bytes: int
    os: str
    python: str
    versions: dict[str, str]
    quantized_engines: tuple[str, ...]
    default_quantized_engine: str | None
    gpus: tuple[GPU, ...]
    accelerated: dict[str, str]       # precision -> why it is (or "" where it is not)
    peak_gflops_1t: float | None      # measured fp32 GEMM, one thread
    peak_gflops_all: float | None     # measured fp32 GEMM, all available cores
    bandwidth_gbs: float | None       # measured memory copy bandwidth (bytes read + written)
    fingerprint: str
    #: measured GEMM peaks per precision the kernels compute in ({"int8": {"1t": ..., "all": ...}, "bf16": ...});
    #: what a row's achieved rate is held against (an int8 row against the int8 roof, not the fp32 one)
    peaks: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    #: the board, where it is one the workbench knows (an NVIDIA Jetson), else ""
    board: str = ""
    #: accelerators besides CUDA GPUs: a Cloud TPU, a Coral Edge TPU (PCIe or USB); empty where there is none
    accelerators: tuple[str, ...] = ()

    # -- questions recipes and charts ask ---------------------------------------------------------
    def has(self, feature: str) -> bool:
        return feature in self.isa

    def is_accelerated(self, precision: str) -> bool:
        return bool(self.accelerated.get(precision))

    @property
    def has_vnni(self) -> bool:
        return any(self.has(f) for f in ("avx512_vnni", "avx_vnni", "amx_int8"))

    @property
    def recommended_quantized_engine(self) -> str:
        """x86 (FBGEMM + oneDNN) on x86-64, qnnpack on Arm; whatever torch supports otherwise."""
        return recommended_engine(self.arch, self.quantized_engines, self.default_quantized_engine)

    @property
    def int8_reduce_range(self) -> bool:
        """Without VNNI, u8s8 int8 dot products can saturate: quantize activations to 7 bits."""
        return self.arch in ("x86_64", "amd64") and not self.has_vnni

    def peak(self, precision: str, threads: int | None = None) -> tuple[float | None, str]:
        """The measured GEMM roof for a model that computes in `precision` (a row's precision: int8, bf16,
        amp-bf16, int4, ...) at `threads` (1, else all cores), and the precision of that roof. int4 and
        weight-only int8 compute in their activation type; a precision without a measured roof falls back
        to fp32's."""
        compute = compute_precision(precision)
        key = "1t" if threads == 1 else "all"
        measured = self.peaks.get(compute, {}).get(key)
        if measured:
            return measured, compute
        return (self.peak_gflops_1t if threads == 1 else self.peak_gflops_all), "fp32"

    def slower_than_fp32(self, precision: str) -> str:
        """Where `precision`'s measured GEMM peak (one thread) is clearly below fp32's (under SLOWER_THAN_FP32 of
        it: single peak measurements vary by tens of percent), what was measured; else "". Said beside an ISA
        that accelerates it: torch's kernels for it do not use those instructions here."""
        low, fp32 = self.peaks.get(precision, {}).get("1t"), self.peak_gflops_1t
        if not low or not fp32 or low >= SLOWER_THAN_FP32 * fp32:
            return ""
        return f"but its measured GEMM runs {low:.0f} GFLOP/s against fp32's {fp32:.0f} (1 thread) with this torch"

    @property
    def machine_balance(self) -> float | None:
        """FLOP per byte at which a kernel turns from memory- to compute-bound (roofline ridge)."""
        if self.peak_gflops_all and self.bandwidth_gbs:
            return self.peak_gflops_all / self.bandwidth_gbs
        return None

    @property
    def label(self) -> str:
        """Short name for tables: CPU model, cores and the best ISA level."""
        level = next((f for f in ("amx_int8", "avx512_vnni", "avx512f", "avx_vnni", "avx2", "asimd") if self.has(f)), "")
        gpu = f" + {self.gpus[0].name}" if self.gpus else ""
        return f"{self.cpu_model} ({self.cores_available} cores{', ' + level if level else ''}){gpu}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def row_fields(self) -> dict[str, str]:
        """What every results row records about the machine it was measured on."""
        return {"isa": " ".join(self.isa), "device": self.label, "device_fingerprint": self.fingerprint,
                "versions": json.dumps(self.versions, sort_keys=True)}

    def summary(self) -> str:
        lines = [
            f"CPU        {self.cpu_model} [{self.arch}], {self.cores_physical} physical / {self.cores_logical} "
            f"logical cores, {self.cores_available} available",
            f"memory     {self.memory_bytes / 2**30:.1f} GiB",
            f"ISA        {' '.join(self.isa) or '(none of the tracked features)'}",
            f"OS         {self.os}; Python {self.python}",
            f"quantized  engines {', '.join(self.quantized_engines) or '(torch not installed)'}; "
            f"recommended {self.recommended_quantized_engine}, reduce_range={self.int8_reduce_range}",
        ]
        for g in self.gpus:
            lines.append(f"GPU        {g.name}, sm{g.compute_capability.replace('.', '')}, "
                         f"{g.memory_bytes / 2**30:.0f} GiB, tensor cores: {', '.join(g.tensor_core_precisions) or 'none'}"
                         f"{', 2:4 sparse' if g.sparse_tensor_cores else ''}")
        if not self.gpus:
            lines.append("GPU        none (CUDA not available)")
        if self.board:
            lines.append(f"board      {self.board}")
        lines.append(f"TPU        {', '.join(self.accelerators) or 'none (no Cloud TPU or Coral Edge TPU found)'}")
        for precision, why in self.accelerated.items():
            lines.append(f"{precision:<10} {'accelerated: ' + why if why else 'not accelerated here (emulated or unsupported)'}"
                         + (f" — {slower}" if why and (slower := self.slower_than_fp32(precision)) else ""))
        fmt = lambda v, unit: f"{v:.1f} {unit}" if v else "not measured"  # noqa: E731
        lines.append(f"measured   fp32 GEMM {fmt(self.peak_gflops_1t, 'GFLOP/s')} (1 thread), "
                     f"{fmt(self.peak_gflops_all, 'GFLOP/s')} (all); copy bandwidth {fmt(self.bandwidth_gbs, 'GB/s')}")
        for precision, roof in self.peaks.items():
            if precision != "fp32":
                lines.append(f"measured   {precision} GEMM {fmt(roof.get('1t'), 'GFLOP/s')} (1 thread), "
                             f"{fmt(roof.get('all'), 'GFLOP/s')} (all)"
                             + ("; int8 as torch's quantized Linear" if precision == "int8" else ""))
        if self.machine_balance:
            lines.append(f"balance    {self.machine_balance:.1f} FLOP/byte (roofline ridge point)")
        lines.append("versions   " + ", ".join(f"{k} {v}" for k, v in self.versions.items()))
        return "\n".join(lines)


# -- reading the machine ------------------------------------------------------------------------------

def _cpu_info() -> tuple[str, str, tuple[str, ...]]:
    import cpuinfo

    info = cpuinfo.get_cpu_info()
    flags = set(info.get("flags", []))
    # py-cpuinfo normalises some names (avx512vnni); accept both spellings
    flags |= {f.replace("avx512", "avx512_") for f in flags if f.startswith("avx512") and "_" not in f}
    isa = tuple(f for f in ISA_FEATURES if f in flags)
    return info.get("brand_raw") or platform.processor() or "unknown CPU", platform.machine().lower(), isa


def _torch_facts() -> tuple[tuple[str, ...], str | None, tuple[GPU, ...]]:
    if version_of("torch") is None:
        return (), None, ()
    import torch

    engines = tuple(e for e in torch.backends.quantized.supported_engines if e != "none")
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            cc = (p.major, p.minor)
            tc = []
            if cc >= (7, 0):
                tc.append("fp16")
            if cc >= (8, 0):
                tc += ["bf16", "tf32", "int8"]
            if cc >= (8, 9):
                tc.append("fp8")
            gpus.append(GPU(p.name, f"{p.major}.{p.minor}", int(p.total_memory), tuple(tc), cc >= (8, 0)))
    return engines, torch.backends.quantized.engine, tuple(gpus)


def _accelerated(isa: tuple[str, ...], gpus: tuple[GPU, ...]) -> dict[str, str]:
    has = set(isa).__contains__
    out = {"fp32": "native"}
    fp16 = [f for f in ("avx512_fp16", "amx_fp16", "asimdhp") if has(f)]
    bf16 = [f for f in ("avx512_bf16", "amx_bf16", "bf16") if has(f)]
    int8 = [f for f in ("amx_int8", "avx512_vnni", "avx_vnni", "asimddp", "i8mm") if has(f)]
    if not int8 and has("avx2"):
        int8 = ["avx2 (no VNNI: u8s8 may saturate, reduce_range used)"]
    gpu_tc = {p for g in gpus for p in g.tensor_core_precisions}
    out["fp16"] = ", ".join(fp16 + (["GPU tensor cores"] if "fp16" in gpu_tc else []))
    out["bf16"] = ", ".join(bf16 + (["GPU tensor cores"] if "bf16" in gpu_tc else []))
    out["tf32"] = "GPU tensor cores" if "tf32" in gpu_tc else ""
    out["int8"] = ", ".join(int8 + (["GPU tensor cores"] if "int8" in gpu_tc else []))
    out["2:4"] = "GPU sparse tensor cores" if any(g.sparse_tensor_cores for g in gpus) else ""
    return out


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), what studies measure with by default."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def recommended_engine(arch: str, engines: tuple[str, ...], default: str | None) -> str:
    """x86 (FBGEMM + oneDNN) on x86-64, qnnpack on Arm; whatever torch supports otherwise."""
    wanted = "qnnpack" if arch in ("aarch64", "arm64") else "x86"
    if engines and wanted not in engines:
        return default or engines[0]
    return wanted


# -- measured peaks -----------------------------------------------------------------------------------

def _peak_timing(repeats: int) -> TimingConfig:
    """A fixed number of timed calls, the first (untimed) call as the warm-up, and a time cap so a slow
    machine does not hold up the start of a study: the device profile is measured before any trial."""
    return TimingConfig(min_time_s=0.0, min_runs=repeats, max_runs=repeats, max_time_s=PEAK_MAX_TIME_S,
                        warmup_runs=0)


def _median_seconds(fn, repeats: int) -> float:
    """Median seconds per call of `fn()`, timed by `measure_latency` (the one timing loop)."""
    return measure_latency(fn, _peak_timing(repeats)).p50 / 1e3


def measure_gemm_gflops(threads: int, n: int = 1024, repeats: int = 10, precision: str = "fp32",
                        engine: str | None = None) -> float:
    """Measured matrix-multiply rate, from the median time of `repeats` (>= 5) calls: fp32 with torch when
    installed, else NumPy's BLAS; bf16 and fp16 as F.linear of those tensors; int8 as torch's quantized Linear
    (uint8 activations, int8 weights) on the engine the workbench's int8 recipes use."""
    if version_of("torch") is None:
        if precision != "fp32":
            raise ValueError(f"measuring a {precision} GEMM needs torch")
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
        return 2 * n**3 / _median_seconds(lambda: a @ b, repeats) / 1e9
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        if precision == "int8":
            previous_engine = torch.backends.quantized.engine
            torch.backends.quantized.engine = engine or previous_engine
            try:
                with warnings.catch_warnings():  # torch deprecates quantized tensors (its int8 Linear still runs)
                    warnings.filterwarnings("ignore", message=".*quantized tensor creation.*")
                    weight = torch.quantize_per_tensor(b, 0.02, 0, torch.qint8)
                    packed = torch.ops.quantized.linear_prepack(weight, None)
                    x = torch.quantize_per_tensor(a.abs(), 0.02, 0, torch.quint8)
                seconds = _median_seconds(lambda: torch.ops.quantized.linear(x, packed, 0.05, 0), repeats)
            finally:
                torch.backends.quantized.engine = previous_engine
        elif precision in ("bf16", "fp16"):
            # as nn.Linear runs it (F.linear, oneDNN's reduced-precision GEMM): on a CPU without avx512_bf16 /
            # avx512_fp16, torch.mm of bf16 / fp16 tensors takes a naive fallback ten times slower (1.0 against
            # 10.2 GFLOP/s on one core of an AVX2-only EPYC), a roof no bf16 model is held to
            dtype = torch.bfloat16 if precision == "bf16" else torch.float16
            a, b = a.to(dtype), b.to(dtype)
            seconds = _median_seconds(lambda: torch.nn.functional.linear(a, b), repeats)
        else:
            out = torch.empty(n, n)
            seconds = _median_seconds(lambda: torch.mm(a, b, out=out), repeats)
    finally:
        torch.set_num_threads(previous)
    return 2 * n**3 / seconds / 1e9


def measure_bandwidth_gbs(megabytes: int = 128, repeats: int = 8) -> float:
    """Measured copy bandwidth: bytes read + written per second (median of `repeats` >= 5 copies), on an
    array far larger than the caches."""
    src = np.ones(megabytes * 2**20 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    seconds = _median_seconds(lambda: np.copyto(dst, src), repeats)
    return 2 * src.nbytes / seconds / 1e9


def _measured_peaks(fingerprint: str, cores: int, engine: str | None) -> dict[str, Any]:
    path = cache_dir() / f"device-{fingerprint}.json"
    try:
        cached = json.loads(path.read_text())
        if cached.get("method") == PEAKS_METHOD:  # profiles cached by an earlier way of measuring: measured again
            return cached
    except (OSError, ValueError):
        pass
    peaks: dict[str, Any] = {
        "peak_gflops_1t": measure_gemm_gflops(1, n=512),
        "peak_gflops_all": measure_gemm_gflops(cores),
        "bandwidth_gbs": measure_bandwidth_gbs(),
        "peaks": {"fp32": {}},
        "method": PEAKS_METHOD,
    }
    peaks["peaks"]["fp32"] = {"1t": peaks["peak_gflops_1t"], "all": peaks["peak_gflops_all"]}
    if version_of("torch") is not None:
        for precision in PEAK_PRECISIONS:
            try:
                peaks["peaks"][precision] = {
                    "1t": measure_gemm_gflops(1, n=512, precision=precision, engine=engine),
                    "all": measure_gemm_gflops(cores, precision=precision, engine=engine)}
            except Exception:  # a precision this torch build cannot run on this CPU: no roof, fp32's is used
                continue
    from ..files import atomic_write_text

    atomic_write_text(path, json.dumps(peaks))
    return peaks


@functools.lru_cache(maxsize=2)
def device(measure: bool = True) -> DeviceProfile:
    """The profile of this machine. `measure=False` skips the measured peaks (no GEMM/bandwidth run)."""
    import psutil

    cpu_model, arch, isa = _cpu_info()
    engines, default_engine, gpus = _torch_facts()
    versions = {"workbench": version_of("efficiency-workbench") or "dev", "python": platform.python_version()}
    versions.update({name: v for name in FRAMEWORKS if (v := version_of(name))})
    cores = available_cores()
    identity = json.dumps([cpu_model, arch, isa, cores, [dataclasses.asdict(g) for g in gpus], versions])
    fingerprint = hashlib.sha256(identity.encode()).hexdigest()[:16]
    accelerated = _accelerated(isa, gpus)
    engine = recommended_engine(arch, engines, default_engine)
    peaks = _measured_peaks(fingerprint, cores, engine) if measure else {}
    return DeviceProfile(
        cpu_model=cpu_model, arch=arch, isa=isa,
        cores_physical=psutil.cpu_count(logical=False) or cores, cores_logical=psutil.cpu_count() or cores,
        cores_available=cores, memory_bytes=psutil.virtual_memory().total,
        os=f"{platform.system()} {platform.release()}", python=platform.python_version(), versions=versions,
        quantized_engines=engines, default_quantized_engine=default_engine, gpus=gpus,
        accelerated=accelerated,
        peak_gflops_1t=peaks.get("peak_gflops_1t"), peak_gflops_all=peaks.get("peak_gflops_all"),
        bandwidth_gbs=peaks.get("bandwidth_gbs"), fingerprint=fingerprint, peaks=peaks.get("peaks", {}),
        board=board(arch), accelerators=accelerators(),
    )


def board(arch: str, root: str = "/") -> str:
    """An NVIDIA Jetson (aarch64 with a Tegra SoC: /etc/nv_tegra_release, or a device-tree model or compatible string
    that names it), with its model and L4T release where the files say; else ""."""
    from pathlib import Path

    if arch not in ("aarch64", "arm64"):
        return ""
    base = Path(root)

    def read(relative: str) -> str:
        try:
            return (base / relative).read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            return ""

    model, compatible, release = read("proc/device-tree/model"), read("proc/device-tree/compatible"), \
        read("etc/nv_tegra_release")
    if not (release or "jetson" in model.lower() or "tegra" in compatible.lower()):
        return ""
    l4t = ""
    if release.startswith("# R"):  # "# R36 (release), REVISION: 3.0, ..."
        major = release[3:].split(" ", 1)[0]
        revision = release.split("REVISION:", 1)[1].split(",", 1)[0].strip() if "REVISION:" in release else ""
        l4t = f" (L4T R{major}{'.' + revision if revision else ''})"
    return f"NVIDIA Jetson: {model or 'Tegra'}{l4t}"


def accelerators(root: str = "/") -> tuple[str, ...]:
    """Cloud TPU chips (/dev/accel*, or /dev/vfio with libtpu installed) and Coral Edge TPUs (PCIe /dev/apex_*, USB
    ids 1a6e:089a and 18d1:9302), by what the system shows; nothing is opened."""
    import glob
    import importlib.util
    import os

    found = []
    accel = sorted(glob.glob(os.path.join(root, "dev", "accel*")))
    if accel or (importlib.util.find_spec("libtpu") is not None and os.path.isdir(os.path.join(root, "dev", "vfio"))):
        found.append(f"Cloud TPU ({len(accel) or 'vfio'} device(s); bf16 is its native type)")
    apex = sorted(glob.glob(os.path.join(root, "dev", "apex_*")))
    if apex:
        found.append(f"Coral Edge TPU, PCIe ({len(apex)})")
    usb = 0
    for ids in glob.glob(os.path.join(root, "sys", "bus", "usb", "devices", "*", "idVendor")):
        try:
            vendor = open(ids).read().strip()
            product = open(os.path.join(os.path.dirname(ids), "idProduct")).read().strip()
        except OSError:
            continue
        usb += (vendor, product) in (("1a6e", "089a"), ("18d1", "9302"))
    if usb:
        found.append(f"Coral Edge TPU, USB ({usb})")
    return tuple(found)
