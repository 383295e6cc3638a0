"""Data-free cost estimates: batch-1 latency and inference memory on a device, from FLOPs and parameters.

These are estimates from a two-number device model (a fixed per-call overhead plus FLOPs at an effective
throughput), good for ruling backbones in or out, not for reporting. Each profile says which hardware it describes
and whether it was fitted to measurements or assumed; the JSON output carries it so the assumption is visible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from zoo.registry import BackboneSpec


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    effective_gflops_per_s: float   # sustained fp32 (cpu) or bf16 (cuda) throughput at batch 1
    overhead_ms: float              # per-forward cost that does not scale with FLOPs (dispatch, kernel launches)
    bytes_per_param: float          # weights in the precision used for inference
    source: str = "measured"        # measured (fitted to timed models) | assumed (no hardware to fit it on)

    def to_dict(self) -> dict:
        return asdict(self)


DEVICE_PROFILES = {
    # Fitted by benchmarks/device_profile.py to 14 registry architectures timed at batch 1 (see
    # docs/performance.md). Depthwise-separable mobile nets run 2-2.6x slower than their FLOPs suggest there.
    "cpu": DeviceProfile("cpu", "reference CPU: 2 threads of an x86-64 server CPU (AMD EPYC), fp32, PyTorch eager",
                         110.0, 5.7, 4.0, source="measured"),
    # No GPU was available to fit this one: a stated assumption for an A10/L4-class GPU, not a measurement.
    "cuda": DeviceProfile("cuda", "data-centre GPU (A10/L4 class), bf16, PyTorch eager (assumed, not measured)",
                          25_000.0, 3.0, 2.0, source="assumed"),
}


@dataclass(frozen=True)
class CostEstimate:
    latency_ms: float
    memory_gb: float

    def to_dict(self) -> dict:
        return {"latency_ms": round(self.latency_ms, 2), "memory_gb": round(self.memory_gb, 3)}


def estimate_cost(spec: BackboneSpec, device: str) -> CostEstimate:
    """Estimated batch-1 latency (ms) and inference memory (GB) of ``spec`` at its default input on ``device``."""
    profile = DEVICE_PROFILES[device]
    latency = profile.overhead_ms + spec.gflops / profile.effective_gflops_per_s * 1000.0
    weights_gb = spec.params_m * 1e6 * profile.bytes_per_param / 1e9
    # Activations at batch 1 are small next to the weights; a quarter on top plus the runtime's own footprint.
    memory = weights_gb * 1.25 + 0.05
    return CostEstimate(latency, memory)
