"""The search against the best hand-picked pipeline, in the same run (goals of issue 16):

- digits-cnn32: a 10-minute search (default space, at most 1 point of accuracy lost on the held-out test split)
  finds a configuration at least as fast as the best hand-listed pipeline of benchmarks/RESULTS.md,
  `prune(0.5, pattern=channel) + fuse + int8-static`;
- MiniLM-L6: a 15-minute search, selecting on 1000 STS-B train pairs and confirming on all 1500 dev pairs, finds
  one at least as fast as the best hand-picked recipe (`to-onnx + int8-dynamic`) at >= 99.5% of the fp32 Spearman.

Each search starts from an empty store (it does its own work in this run). The hand-picked pipeline is measured in
the same study, then the winner and it are timed again interleaved, round by round: the ratio hand / winner (> 1:
the winner is faster) is the median of the per-round ratios with its IQR. `--quick` runs 1- and 2-minute searches
(a smoke run, not the goal).
"""

from __future__ import annotations

import time
from pathlib import Path

import workbench as wb
from workbench.recommend.heldout import check
from workbench.tasks import outputs_on
from workbench.text import STS

from .harness import Row, quantiles

DATA = Path(__file__).resolve().parents[1] / "data" / "stsbenchmark"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CASES = (
    # model, budget (s), max drop, hand-picked best, quick budget (s)
    ("digits-cnn32", 600, 1.0, "prune(0.5, pattern=channel) + fuse + int8-static", 60),
    ("minilm-l6", 900, 0.5, "to-onnx + int8-dynamic", 120),
)


def _tasks(name: str):
    model, task = wb.zoo.load(name)
    if name == "minilm-l6":  # select on STS-B train pairs, confirm on the dev split it never saw
        train = STS(DATA / "sts-train.csv")
        return model, train.split(1000 / train.units, seed=0)[1], STS(DATA / "sts-dev.csv")
    return model, task, wb.zoo.load(name, split="test")[1]


def run(rounds: int, timing: wb.TimingConfig, threads: int, quick: bool | None = None) -> list[Row]:
    quick = timing.min_time_s < 0.1 if quick is None else quick
    rows = []
    for name, budget, max_drop, hand, quick_budget in CASES:
        budget = quick_budget if quick else budget
        model, selection, holdout = _tasks(name)
        study = wb.Study(model, selection, timing=timing, threads=threads)
        started = time.perf_counter()
        found = study.search(holdout=holdout, max_drop=max_drop, budget_s=budget)
        took = time.perf_counter() - started
        print(found.explanation, flush=True)
        hand_row = study.trial(hand)
        unit = found.quality.unit
        label = f"search {name} ({budget / 60:g} min)"
        if not found.met:
            rows.append(Row(f"{label}: winner vs hand-picked `{hand}`", float("nan"), float("nan"), "x", 0,
                            ">= 1.0x", False, f"no recommendation: {found.explanation[:160]}"))
            continue
        winner = found.recommended
        reference = outputs_on(study.baseline, holdout, holdout.eval_batch_size or study.batch_size, threads)
        hand_check = check(hand, holdout, found.quality, outputs_on(study.handle(hand), holdout,
                           holdout.eval_batch_size or study.batch_size, threads), reference, max_drop)
        ARTIFACTS.mkdir(exist_ok=True)
        found.save(ARTIFACTS / f"search-{name}.csv")  # every trial with its verdict, for a look afterwards
        same = winner == hand or study.handle(winner).fingerprint() == study.handle(hand).fingerprint()
        if same:  # the same model (e.g. per_channel=true is what auto means on ONNX Runtime): equal by definition
            ratios = [1.0] * rounds
        else:
            per = study.interleaved([hand, winner], rounds)
            ratios = [a / b for a, b in zip(per[hand], per[winner])]
        median, iqr = quantiles(ratios)
        held = found.check_of(winner)
        measured = int((found.frame["origin"] != "baseline").sum())
        rows.append(Row(f"{label}: winner vs hand-picked best (latency ratio)", median, iqr, "x", len(ratios),
                        ">= 1.0x", same or median >= 1.0,
                        f"winner `{winner}` {found.row(winner)['latency_ms_p50']:.4g} ms"
                        f"{' (the same model as the hand-picked one)' if same else ''}; hand-picked `{hand}` "
                        f"{hand_row['latency_ms_p50']:.4g} ms (held-out drop {hand_check.drop:.2f}); {measured} "
                        f"configurations in {took:.0f} s"))
        rows.append(Row(f"{label}: winner's drop on the held-out split", held.drop, held.ci_high - held.ci_low,
                        "", held.units, f"<= {max_drop:g}", held.drop <= max_drop,
                        f"{unit}; 95% CI {held.ci_low:+.2f} to {held.ci_high:+.2f} over {held.units} held-out units "
                        f"(spread column = CI width); on validation {found.row(winner)['drop']:.2f}"))
    return rows
