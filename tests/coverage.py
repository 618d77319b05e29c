"""What runs on what: every recipe, and the common two-recipe pipelines, on the architectures of
tests/architectures.py, each measured in a study like any user's (tests/test_coverage.py).

Each architecture is measured in a worker process (two at a time, one thread each), so that a crash is a
broken pool (the test fails loudly) and the matrix costs half its CPU time in wall time. The task is the float
model's own top-1 on its inputs (labels from the random-weight model), 16 evaluation samples and 64 training
samples, timed at the evaluation batch (one shape: torch.compile compiles once).

`python -m tests.coverage` prints the README table from a fresh run.
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

TORCH = (
    "fp16", "bf16", "autocast", "tf32", "channels-last", "fold-bn", "fuse", "torchscript", "compile", "executorch",
    "to-onnx", "int8-dynamic", "int8-static", "int8-weight-only", "int4-weight-only", "qat", "prune",
    "prune(finetune=0) + int8-dynamic", "to-onnx + int8-dynamic", "to-onnx + int8-static",
    "prune(pattern=2:4) + fp16 + sparse-kernels",
)
KERAS = (
    "tflite", "xla", "fp16", "bf16", "int8-dynamic", "int8-static", "qat", "qat + tflite", "prune", "cluster",
    "prune(finetune=0) + int8-dynamic", "int8-static + edgetpu", "int8-static + tf-micro", "tfjs",
)

#: the least cosine similarity to the float model's outputs an `ok` cell must keep, by the kind of change
EXACT, HALF, INT = 0.999, 0.99, 0.95
#: what changes a random-weight model past any bound: fine-tuning on labels that a random model gives 64 samples
#: (noise to fit), and pruning half of weights that carry no trained redundancy (global magnitude pruning of a
#: random mobilenet_v3_small keeps a cosine of 0.34). These cells are held to running and giving finite outputs;
#: test_torch_recipes and test_tensorflow hold them to accuracy on trained models.
FREE = ("qat", "prune", "cluster")


#: torch's own static int8 on an x86 CPU without VNNI quantizes activations to 7 bits (reduce_range: FBGEMM's
#: AVX2 u8s8 products saturate at 8): twice the step, measured 0.906 on the random-weight mobilenet_v3_small
#: (AMD EPYC, AVX2 only) where VNNI machines keep over 0.95
INT_7BIT = 0.88


def bound(pipeline: str, framework: str = "torch") -> float | None:
    """The fidelity an `ok` cell of `pipeline` must keep (None: only finite outputs)."""
    if any(step.strip().startswith(FREE) for step in pipeline.split("+")):
        return None
    if framework == "torch" and "int8-static" in pipeline and "to-onnx" not in pipeline:
        import workbench as wb

        if wb.device(measure=False).int8_reduce_range:
            return INT_7BIT
    if any(k in pipeline for k in ("int8", "int4", "qat")):
        return INT
    if any(k in pipeline for k in ("fp16", "bf16", "autocast")):
        return HALF
    return EXACT


def measure(framework: str, name: str) -> list[dict]:
    """Every pipeline of `framework` on one architecture: a row per pipeline (status, reason, fidelity)."""
    warnings.filterwarnings("ignore")
    import workbench as wb

    from . import architectures

    builders = architectures.torch_models() if framework == "torch" else architectures.keras_models()
    model, inputs, train = builders[name]()
    outputs = _outputs(framework, model, inputs)
    if outputs.ndim == 2:
        labels = _outputs(framework, model, train).argmax(-1)
        task = wb.tasks.Classification(inputs, outputs.argmax(-1), train=(train, labels))
    else:  # a sequence of vectors (attention on its own): fidelity only
        task = wb.tasks.Unlabelled(inputs)
    timing = wb.TimingConfig(min_time_s=0.0, min_runs=5, warmup_runs=1)
    study = wb.Study(model, task, batch_size=len(inputs), threads=1, timing=timing, measure_memory=False,
                     device_profile=wb.device(measure=False))
    pipelines = TORCH if framework == "torch" else KERAS
    frame = study.run(list(pipelines), progress=False).frame.set_index("pipeline")
    rows = []
    for pipeline in pipelines:
        spec = wb.parse_pipelines([pipeline])[0].spec
        row = frame.loc[spec]
        cosine = row.get("fidelity_cosine")
        rows.append({"framework": framework, "architecture": name, "pipeline": pipeline,
                     "status": row["status"], "reason": row.get("error") or "",
                     "cosine": None if cosine is None or (isinstance(cosine, float) and math.isnan(cosine))
                     else float(cosine), "precision": row.get("precision")})
    return rows


def _outputs(framework: str, model, x):
    import numpy as np

    if framework == "keras":
        return np.asarray(model(x, training=False))
    import torch

    from workbench.backends.torch.handle import to_numpy

    with torch.no_grad():
        return to_numpy(model(torch.from_numpy(x)))


#: the slowest first, so that two workers finish together
ORDER = ("mobilenet_v3_small", "resnet18")


def run_matrix(workers: int = 2) -> list[dict]:
    """Every cell, measured in `workers` spawned processes."""
    from . import architectures

    jobs = [("torch", n) for n in architectures.TORCH_NAMES] + [("keras", n) for n in architectures.KERAS_NAMES]
    jobs.sort(key=lambda job: ORDER.index(job[1]) if job[1] in ORDER else len(ORDER))
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(measure, *zip(*jobs)))
    return [row for rows in results for row in rows]


# -- the README table ---------------------------------------------------------------------------------------

MARK = {"ok": "✓", "unsupported": "–"}


def table(rows: list[dict], machine: str) -> str:
    """The markdown for the README: per framework, pipelines × architectures (✓ runs, – unsupported, with why)."""
    from . import architectures

    out = [f"<!-- generated by tests/test_coverage.py (make coverage-table) on: {machine} -->", ""]
    for framework, pipelines, names in (("torch", TORCH, architectures.TORCH_NAMES),
                                        ("keras", KERAS, architectures.KERAS_NAMES)):
        cells = [r for r in rows if r["framework"] == framework]
        title = "PyTorch" if framework == "torch" else "Keras"
        out += [f"**{title}** (✓ runs and keeps the float model's outputs; – unsupported, why below)", "",
                "| recipe | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for pipeline in pipelines:
            marks = [MARK.get(_cell(cells, n, pipeline)["status"], "**failed**") for n in names]
            out.append(f"| `{pipeline}` | " + " | ".join(marks) + " |")
        out += ["", f"<details><summary>Why each – ({title})</summary>", ""]
        for pipeline in pipelines:
            reasons: dict[str, list[str]] = {}
            for name in names:
                cell = _cell(cells, name, pipeline)
                if cell["status"] != "ok":
                    reasons.setdefault(_short(cell["reason"]), []).append(name)
            for reason, where in reasons.items():
                on = "every architecture" if len(where) == len(names) else ", ".join(where)
                out.append(f"- `{pipeline}` on {on}: {reason}")
        out += ["", "</details>", ""]
    return "\n".join(out).rstrip() + "\n"


def _cell(cells: list[dict], name: str, pipeline: str) -> dict:
    return next(c for c in cells if c["architecture"] == name and c["pipeline"] == pipeline)


def _short(reason: str, limit: int = 300) -> str:
    """One line of a reason, without the numbers that change from run to run (addresses, temp paths)."""
    import re

    text = re.sub(r"\s+", " ", reason).strip().replace("|", "/")
    text = re.sub(r"0x[0-9a-f]{6,}", "0x…", text)
    text = re.sub(r"/tmp/\S+", "…", text)
    text = re.sub(r"__inference_\w+", "…", text)
    return text[:limit] + ("…" if len(text) > limit else "")


def machine_key() -> str:
    """What decides which cells run here, and the words of their reasons: the architecture, the precisions the
    CPU accelerates, GPUs, and the frameworks' versions."""
    import workbench as wb

    profile = wb.device(measure=False)
    fast = sorted(p for p, why in profile.accelerated.items() if why)
    versions = ", ".join(f"{k} {profile.versions[k]}" for k in ("torch", "executorch", "tensorflow", "keras",
                                                                  "onnxruntime", "transformers") if k in profile.versions)
    return f"{profile.arch}, accelerated: {', '.join(fast) or 'fp32 only'}, GPUs: {len(profile.gpus)}; {versions}"


if __name__ == "__main__":
    print(table(run_matrix(), machine_key()))
