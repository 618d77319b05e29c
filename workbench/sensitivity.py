"""One-at-a-time sensitivity: which layers does a recipe hurt most?

    study.sensitivity("to-onnx + int8-dynamic")                    # each layer kept in fp32 alone
    study.sensitivity("int8-dynamic", mode="only")                 # the recipe on one layer alone

Every probe is an ordinary pipeline — the recipe with `exclude=` — so it is measured, cached, stored and run on
the study's executor like any trial (content-addressed: a second call costs nothing). The layers probed are the
ones the recipe changed in the full pipeline (`handle.changed_layers`). Ranked by how much of the fidelity the
full recipe lost each probe gives back (mode="exclude": keeping that layer in float) or costs (mode="only").
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .errors import ParameterError, UnsupportedError
from .recipes import Pipeline

if TYPE_CHECKING:
    from .study import Study

MODES = ("exclude", "only")


def _probed_step(pipeline: Pipeline) -> int:
    for i in range(len(pipeline.steps) - 1, -1, -1):
        if any(f.name == "exclude" for f in dataclasses.fields(pipeline.steps[i])):
            return i
    names = ", ".join(s.name for s in pipeline.steps) or "baseline"
    raise ParameterError("sensitivity", "pipeline", pipeline.spec,
                         f"a pipeline ending in a recipe that takes exclude= (int8-dynamic, int8-static, prune); "
                         f"this one has {names}")


def plan(study: Study, pipeline: Any, *, mode: str = "exclude", layers: list[str] | None = None) -> list[tuple[str, Pipeline]]:
    """(layer, probe pipeline) pairs for `pipeline`, without measuring anything but the full pipeline's model."""
    if mode not in MODES:
        raise ParameterError("sensitivity", "mode", mode, f"one of {', '.join(MODES)}")
    pipeline = study._pipeline(pipeline)
    index = _probed_step(pipeline)
    step = pipeline.steps[index]
    changed = list(study.handle(pipeline).changed_layers)
    if not changed:
        raise UnsupportedError(pipeline.spec, "it changed no layer of this model, so there is nothing to rank")
    if layers is not None:
        unknown = [name for name in layers if name not in changed]
        if unknown:
            raise ParameterError("sensitivity", "layers", unknown[0], f"one of the layers {pipeline.spec} changes: "
                                                                       f"{', '.join(changed)}")
        changed = list(layers)
    probes = []
    for name in changed:
        keep = (name,) if mode == "exclude" else tuple(n for n in study.handle(pipeline).changed_layers if n != name)
        probe = dataclasses.replace(step, exclude=tuple(step.exclude) + keep)
        probes.append((name, Pipeline(pipeline.steps[:index] + (probe,) + pipeline.steps[index + 1:])))
    return probes


def estimate_seconds(study: Study, pipeline: Any, n: int) -> float:
    """What n probes will take: n times the full pipeline's own trial (its measured duration)."""
    return n * float(study.record(pipeline).row.get("duration_s") or 0.0)


def sensitivity(study: Study, pipeline: Any, *, mode: str = "exclude", layers: list[str] | None = None,
                quality: str = "fidelity_cosine", progress: bool = True) -> pd.DataFrame:
    pipeline = study._pipeline(pipeline)
    probes = plan(study, pipeline, mode=mode, layers=layers)
    full = study.record(pipeline).row
    base = study.record(Pipeline(())).row
    if progress:
        todo = sum(not study.is_measured(p) for _, p in probes)
        print(f"sensitivity of {pipeline.spec}: {len(probes)} probe(s), {todo} to measure, about "
              f"{estimate_seconds(study, pipeline, todo):.0f} s")
    results = study.run([p for _, p in probes], progress=progress).frame.set_index("pipeline")
    lost = (base[quality] or 0.0) - (full[quality] or 0.0)
    rows = []
    for layer, probe in probes:
        row = results.loc[probe.spec]
        value = row[quality] if row["status"] == "ok" else np.nan
        if mode == "exclude":
            effect = (value - full[quality]) / lost if lost > 0 else np.nan  # share of the loss recovered
        else:
            effect = (base[quality] - value) / lost if lost > 0 else np.nan  # share of the loss it causes alone
        rows.append({"layer": layer, "pipeline": probe.spec, "status": row["status"], quality: value,
                     "recovered" if mode == "exclude" else "caused": effect, "metric": row["metric"],
                     "latency_ms_p50": row["latency_ms_p50"], "error": row["error"]})
    frame = pd.DataFrame(rows)
    key = "recovered" if mode == "exclude" else "caused"
    frame = frame.sort_values(key, ascending=False, na_position="last").reset_index(drop=True)
    frame.attrs.update(pipeline=pipeline.spec, mode=mode, quality=quality, baseline=base[quality], full=full[quality])
    return frame
