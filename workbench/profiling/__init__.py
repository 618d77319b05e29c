"""Device profile and measurements (latency with spread; size, FLOPs and memory live on the handle)."""

from .._sysmem import session_memory
from .device import DeviceProfile, device, measure_bandwidth_gbs, measure_gemm_gflops
from .timing import NOISY_SPREAD, LatencyStats, TimingConfig, measure_latency

__all__ = ["NOISY_SPREAD", "DeviceProfile", "LatencyStats", "TimingConfig", "device", "measure_bandwidth_gbs",
           "measure_gemm_gflops", "measure_latency", "session_memory"]
