"""GPU check, for a machine with a CUDA device: fp32 / TF32 / fp16 / bf16 matmul rates, 2:4 semi-structured
sparse vs dense fp16, and workbench studies of the digits models on the GPU (every precision recipe, with
accuracy and fidelity). Prints a markdown report and writes it (and JSON) to --out.

    PYTHONPATH=. python benchmarks/gpu.py --out results/       # on the GPU machine
    PYTHONPATH=. python benchmarks/gpu.py --dry-run            # the same code path on the CPU, tiny
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import workbench as wb  # noqa: E402
from workbench.profiling import TimingConfig, measure_latency  # noqa: E402

REPORT: list[str] = []
DATA: dict = {}


def say(line: str = "") -> None:
    print(line, flush=True)
    REPORT.append(line)


def save(out: Path | None) -> None:
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu.md").write_text("\n".join(REPORT) + "\n")
        (out / "gpu.json").write_text(json.dumps(DATA, indent=1, default=str))


def gemm_rates(device: str, sizes: list[int], timing: TimingConfig) -> None:
    say("## Dense matmul rate (C = A @ B, n x n x n)")
    say("| n | fp32 TFLOP/s | tf32 TFLOP/s | fp16 TFLOP/s | bf16 TFLOP/s |")
    say("|---|---|---|---|---|")
    sync = torch.cuda.synchronize if device == "cuda" else None
    for n in sizes:
        rates = {}
        for name, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                                  ("fp16", torch.float16, False), ("bf16", torch.bfloat16, False)):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            stats = measure_latency(lambda: a @ b, timing, sync=sync)
            rates[name] = 2 * n**3 / (stats.p50 / 1e3) / 1e12
            DATA.setdefault("gemm", []).append({"n": n, "precision": name, "p50_ms": stats.p50,
                                                "iqr_ms": stats.iqr, "tflops": rates[name]})
        torch.backends.cuda.matmul.allow_tf32 = False
        say(f"| {n} | {rates['fp32']:.1f} | {rates['tf32']:.1f} | {rates['fp16']:.1f} | {rates['bf16']:.1f} |")


def sparse_vs_dense(shapes: list[tuple[int, int, int]], timing: TimingConfig) -> None:
    from torch.sparse import SparseSemiStructuredTensor, to_sparse_semi_structured

    from workbench.backends.torch.sparsity import two_four_mask

    say("\n## 2:4 semi-structured sparse vs dense, fp16 Linear (y = x W^T)")
    say("| tokens x in -> out | dense ms (IQR) | 2:4 cuSPARSELt ms (IQR) | speed-up | 2:4 CUTLASS ms | max abs diff |")
    say("|---|---|---|---|---|---|")
    for m, k, n in shapes:
        w = torch.randn(n, k, device="cuda", dtype=torch.float16)
        w = w * two_four_mask(w)
        x = torch.randn(m, k, device="cuda", dtype=torch.float16)
        dense = measure_latency(lambda: torch.nn.functional.linear(x, w), timing, sync=torch.cuda.synchronize)
        results = {}
        for backend, force_cutlass in (("cusparselt", False), ("cutlass", True)):
            try:
                SparseSemiStructuredTensor._FORCE_CUTLASS = force_cutlass
                ws = to_sparse_semi_structured(w)
                diff = (torch.nn.functional.linear(x, ws) - torch.nn.functional.linear(x, w)).abs().max().item()
                results[backend] = (measure_latency(lambda: torch.nn.functional.linear(x, ws), timing,
                                                    sync=torch.cuda.synchronize), diff)
            except Exception as exc:  # a backend missing from this build is reported, not fatal
                results[backend] = (None, f"{type(exc).__name__}: {str(exc)[:80]}")
        SparseSemiStructuredTensor._FORCE_CUTLASS = False
        lt, lt_diff = results["cusparselt"]
        cu, _ = results["cutlass"]
        say(f"| {m} x {k} -> {n} | {dense.p50:.3f} ({dense.iqr:.3f}) | "
            f"{f'{lt.p50:.3f} ({lt.iqr:.3f})' if lt else lt_diff} | "
            f"{f'{dense.p50 / lt.p50:.2f}x' if lt else '-'} | {f'{cu.p50:.3f}' if cu else results['cutlass'][1]} | "
            f"{lt_diff if isinstance(lt_diff, str) else f'{lt_diff:.3g}'} |")
        DATA.setdefault("sparse", []).append({"shape": [m, k, n], "dense_ms": dense.p50,
                                              "cusparselt_ms": lt.p50 if lt else None,
                                              "cutlass_ms": cu.p50 if cu else None})


def studies(target: str, batch: int, timing: TimingConfig, models: dict[str, list[str]]) -> None:
    for name, pipelines in models.items():
        model, task = wb.zoo.load(name)
        study = wb.Study(model, task, batch_size=batch, timing=timing, target=target)
        results = study.run(pipelines, progress=False)
        frame = results.frame
        base = frame.iloc[0]["latency_ms_p50"]
        say(f"\n## {name} on {target}, batch {batch}: workbench study")
        say("| pipeline | status | precision | accuracy | fidelity | p50 ms (IQR) | speed-up | first call ms | size KB |")
        say("|---|---|---|---|---|---|---|---|---|")
        for _, r in frame.iterrows():
            if r["status"] != "ok":
                say(f"| {r['pipeline']} | {r['status']} | | | | | | | {str(r['error'])[:90]} |")
                continue
            say(f"| {r['pipeline']} | ok | {r['precision']} | {r['metric']:.4f} | {r['fidelity']:.4f} | "
                f"{r['latency_ms_p50']:.4f} ({r['latency_ms_iqr']:.4f}) | {base / r['latency_ms_p50']:.2f}x | "
                f"{r['first_call_ms']:.1f} | {r['size_bytes'] / 1024:.0f} |")
        DATA.setdefault("studies", {})[name] = frame.drop(columns=["latency_samples_ms"]).to_dict("records")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (checks the script)")
    parser.add_argument("--studies-only", action="store_true", help="skip the matmul micro-benchmarks")
    args = parser.parse_args()
    started = time.time()
    cuda = torch.cuda.is_available() and not args.dry_run
    profile = wb.device()
    say(f"# GPU check {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    say("```\n" + profile.summary() + f"\ntorch {torch.__version__}, CUDA {torch.version.cuda}\n```")
    DATA["device"] = profile.to_dict()
    timing = TimingConfig(min_time_s=0.2 if cuda else 0.02, min_runs=20 if cuda else 5, warmup_runs=5)
    steps = []
    if cuda and not args.studies_only:
        steps.append(lambda: gemm_rates("cuda", [4096, 8192], timing))
        steps.append(lambda: sparse_vs_dense([(4096, 4096, 4096), (8192, 8192, 8192), (32768, 4096, 4096)], timing))
    elif not cuda:
        steps.append(lambda: gemm_rates("cpu", [256], timing))
    precision = ["tf32", "fp16", "bf16", "autocast(bf16)", "autocast(fp16)"]
    steps.append(lambda: studies("cuda" if cuda else "cpu", 4096 if cuda else 32, timing, {
        "digits-mlp": precision + ["prune(pattern=2:4, finetune=0) + fp16 + sparse-kernels",
                                   "prune(pattern=2:4) + fp16 + sparse-kernels", "compile", "int8-dynamic",
                                   "int8-dynamic + compile", "fp8", "fp8 + compile"],
        "digits-cnn32": precision + ["channels-last", "fp16 + channels-last", "cudnn-benchmark",
                                     "fp16 + channels-last + cudnn-benchmark"],
    }))
    for step in steps:
        try:
            step()
        except Exception:
            say("\n```\n" + traceback.format_exc()[-3000:] + "```")
        save(args.out)
    say(f"\n(total {time.time() - started:.0f} s)")
    save(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
