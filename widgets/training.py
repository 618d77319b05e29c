"""The training panel: toggle training recipes and see step time, memory, loss and accuracy at once."""

from __future__ import annotations

import dataclasses

import workbench as wb

from .state import TrialModel


@dataclasses.dataclass(frozen=True)
class TrainingState:
    checkpoint: bool = False
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    grad_accum: int = 1    # 1: off
    ddp: int = 1           # processes; 1: off

    @property
    def spec(self) -> str:
        steps = [name for name, on in (("checkpoint", self.checkpoint), ("amp", self.amp),
                                       ("channels-last", self.channels_last), ("compile", self.compile)) if on]
        if self.grad_accum > 1:
            steps.append(f"grad-accum({self.grad_accum})")
        if self.ddp > 1:
            steps.append(f"ddp({self.ddp})")
        return " + ".join(steps) or "baseline"


class TrainingModel(TrialModel):
    QUANTITIES = (("latency_ms_p50", "step (median ± IQR/2)", "time"), ("throughput", "samples / s", "rate"),
                  ("peak_mem_bytes", "peak memory", "memory"), ("train_loss", "training loss", "loss"),
                  ("metric", "accuracy", "points"))

    def __init__(self, study: wb.TrainingStudy, *, background: bool = True):
        super().__init__(study, TrainingState(), background=background)

    def canonical(self, spec: str) -> str:
        return wb.Pipeline.parse(spec, wb.recipes.TRAINING_RECIPES).spec

    def chart(self):
        return wb.charts.training_tradeoff(self.frame(), current=self.shown["pipeline"] if self.shown else None)

    def comparison(self) -> list[dict]:
        return self.compare(self.QUANTITIES)
