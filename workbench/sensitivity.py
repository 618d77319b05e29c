"""One-at-a-time sensitivity: which layers does a recipe hurt most?

    study.sensitivity("to-onnx + int8-dynamic")                    # each layer kept in fp32 alone
    study.sensitivity("int8-dynamic", mode="only")                 # the recipe on one layer alone
    study.recover("to-onnx + int8-dynamic", share=0.5)             # the fewest layers kept in fp32 to win back half

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
UNITS = ("layer", "block")


def block_of(layer: str) -> str:
    """The repeated block a layer is in: its name up to the first numeric part (`encoder.layer.3.attention.self.query`
    → `encoder.layer.3`; a Sequential's `3` → `3`); a layer outside any numbered block is its own block."""
    parts = layer.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[:i + 1])
    return layer


def probed_step(pipeline: Pipeline) -> int:
    for i in range(len(pipeline.steps) - 1, -1, -1):
        if any(f.name == "exclude" for f in dataclasses.fields(pipeline.steps[i])):
            return i
    names = ", ".join(s.name for s in pipeline.steps) or "baseline"
    raise ParameterError("sensitivity", "pipeline", pipeline.spec,
                         f"a pipeline ending in a recipe that takes exclude= (int8-dynamic, int8-static, prune); "
                         f"this one has {names}")


def excluding(pipeline: Pipeline, index: int, names: tuple[str, ...]) -> Pipeline:
    """`pipeline` with `names` added to the exclude= of its step `index`."""
    step = pipeline.steps[index]
    probe = dataclasses.replace(step, exclude=tuple(step.exclude) + tuple(names))
    return Pipeline(pipeline.steps[:index] + (probe,) + pipeline.steps[index + 1:])


def plan(study: Study, pipeline: Any, *, mode: str = "exclude", layers: list[str] | None = None,
         by: str = "layer") -> list[tuple[str, Pipeline]]:
    """(layer or block, probe pipeline) pairs for `pipeline`, without measuring anything but the full pipeline's
    model. by="block" probes each repeated block (a transformer layer) as one unit."""
    if mode not in MODES:
        raise ParameterError("sensitivity", "mode", mode, f"one of {', '.join(MODES)}")
    if by not in UNITS:
        raise ParameterError("sensitivity", "by", by, f"one of {', '.join(UNITS)}")
    pipeline = study._pipeline(pipeline)
    index = probed_step(pipeline)
    changed_by = study.handle(Pipeline(pipeline.steps[:index + 1]))  # a later export does not know the layers
    changed = list(changed_by.changed_layers)
    if not changed:
        raise UnsupportedError(pipeline.spec, "it changed no layer of this model, so there is nothing to rank")
    if layers is not None:
        unknown = [name for name in layers if name not in changed]
        if unknown:
            raise ParameterError("sensitivity", "layers", unknown[0], f"one of the layers {pipeline.spec} changes: "
                                                                       f"{', '.join(changed)}")
        changed = list(layers)
    everything = changed_by.changed_layers
    units = list(dict.fromkeys(block_of(n) for n in changed)) if by == "block" else changed
    probes = []
    for name in units:
        inside = [n for n in everything if n == name or n.startswith(name + ".")]
        keep = (name,) if mode == "exclude" else tuple(n for n in everything if n not in inside)
        probes.append((name, excluding(pipeline, index, keep)))
    return probes


def _quality_rows(study: Study, pipeline: Pipeline, quality: str) -> tuple[dict, dict]:
    """The full pipeline's and the baseline's rows, both with a number in `quality`."""
    full, base = study.record(pipeline).row, study.record(Pipeline(())).row
    for row in (full, base):
        value = row.get(quality)
        if not isinstance(value, (int, float)) or value != value:
            raise ParameterError("sensitivity", "quality", quality,
                                 f"a column with a number in both the baseline's row and {pipeline.spec}'s "
                                 f"(fidelity_cosine, fidelity, metric); {row['pipeline']} has {value!r}"
                                 + (f" ({row['status']}: {row['error']})" if row["status"] != "ok" else ""))
    return full, base


def estimate_seconds(study: Study, pipeline: Any, n: int) -> float:
    """What n probes will take: n times the full pipeline's own trial (its measured duration)."""
    return n * float(study.record(pipeline).row.get("duration_s") or 0.0)


def sensitivity(study: Study, pipeline: Any, *, mode: str = "exclude", layers: list[str] | None = None,
                by: str = "layer", quality: str = "fidelity_cosine", progress: bool = True) -> pd.DataFrame:
    pipeline = study._pipeline(pipeline)
    probes = plan(study, pipeline, mode=mode, layers=layers, by=by)
    full, base = _quality_rows(study, pipeline, quality)
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
    frame.attrs.update(pipeline=pipeline.spec, mode=mode, by=by, quality=quality, baseline=base[quality], full=full[quality])
    return frame


def recover(study: Study, pipeline: Any, *, share: float = 0.5, by: str = "layer", quality: str = "fidelity_cosine",
            ranking: pd.DataFrame | None = None, max_steps: int = 8, progress: bool = True) -> pd.DataFrame:
    """Keep layers in fp32 in the order of the sensitivity ranking, one more at a time, until `share` of the
    `quality` the full recipe lost is back (or `max_steps` layers are kept). Each step is a trial; rows: the
    layers kept so far, the pipeline, its quality, the share recovered and its latency. The last row is the
    answer (`.attrs["reached"]` says whether it reached the share)."""
    if not 0 < share <= 1:
        raise ParameterError("recover", "share", share, "a number in (0, 1]")
    pipeline = study._pipeline(pipeline)
    ranking = ranking if ranking is not None else sensitivity(study, pipeline, by=by, quality=quality,
                                                              progress=progress)
    index = probed_step(pipeline)
    full_row, base_row = _quality_rows(study, pipeline, quality)
    full, base = full_row[quality], base_row[quality]
    lost = base - full
    rows, kept = [], []
    if lost <= 0:  # nothing was lost: nothing to win back
        frame = pd.DataFrame(rows, columns=["kept_fp32", "layers", "pipeline", "status", quality, "recovered",
                                            "latency_ms_p50", "size_bytes"])
        frame.attrs.update(pipeline=pipeline.spec, share=share, reached=True, full=full, baseline=base, quality=quality)
        return frame
    for layer in list(ranking["layer"])[:max_steps]:
        kept.append(layer)
        candidate = excluding(pipeline, index, tuple(kept))
        row = study.trial(candidate)
        recovered = (row[quality] - full) / lost if lost > 0 and row["status"] == "ok" else np.nan
        rows.append({"kept_fp32": len(kept), "layers": ", ".join(kept), "pipeline": candidate.spec,
                     "status": row["status"], quality: row[quality], "recovered": recovered,
                     "latency_ms_p50": row["latency_ms_p50"], "size_bytes": row["size_bytes"]})
        if recovered >= share:
            break
    frame = pd.DataFrame(rows)
    frame.attrs.update(pipeline=pipeline.spec, share=share, reached=bool(len(frame) and frame["recovered"].iloc[-1] >= share),
                       full=full, baseline=base, quality=quality)
    return frame
