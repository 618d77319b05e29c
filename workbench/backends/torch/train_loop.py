"""The measured training loop: step time, samples/s, peak memory and quality after a fixed budget of steps,
for a model trained from the same initial weights on the same batches under each training recipe."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...errors import UnsupportedError
from ...recipes import ApplyContext, register_handler
from ...recipes.training import Amp, Checkpoint, Ddp, GradAccum, TrainChannelsLast, TrainCompile
from .handle import profiled_peak_bytes


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 64
    steps: int = 30
    warmup_steps: int = 3
    lr: float = 1e-3
    seed: int = 0
    threads: int = 1
    device: str = "cpu"


@dataclasses.dataclass(frozen=True)
class TrainSetup:
    """How a model is trained: what the training recipes' handlers set (format torch, like the handles
    inference recipes transform). The trainer is built from it."""

    module: nn.Module
    format: str = "torch"
    lineage: tuple = ()
    channels_last: bool = False
    checkpoint_segments: int | None = None
    compiled: bool = False
    amp_dtype: str | None = None       # auto | bf16 | fp16 when amp is on
    micro_batches: int = 1
    world_size: int | None = None      # ddp

    def evolve(self, **changes: Any) -> TrainSetup:
        return dataclasses.replace(self, **changes)


@register_handler(TrainChannelsLast, "torch")
def _channels_last(recipe: TrainChannelsLast, setup: TrainSetup, context: ApplyContext) -> TrainSetup:
    return setup.evolve(channels_last=True)


@register_handler(Checkpoint, "torch")
def _checkpoint(recipe: Checkpoint, setup: TrainSetup, context: ApplyContext) -> TrainSetup:
    if not isinstance(setup.module, nn.Sequential):
        raise UnsupportedError(recipe.to_spec(), f"it checkpoints the segments of an nn.Sequential; "
                                                 f"this model is a {type(setup.module).__name__}")
    if setup.compiled:
        raise UnsupportedError("checkpoint + compile", "not combined here: compile the model or checkpoint it")
    return setup.evolve(checkpoint_segments=min(recipe.segments, len(setup.module)))


@register_handler(TrainCompile, "torch")
def _compile(recipe: TrainCompile, setup: TrainSetup, context: ApplyContext) -> TrainSetup:
    if setup.checkpoint_segments:
        raise UnsupportedError("checkpoint + compile", "not combined here: compile the model or checkpoint it")
    return setup.evolve(compiled=True)


@register_handler(Amp, "torch")
def _amp(recipe: Amp, setup: TrainSetup, context: ApplyContext) -> TrainSetup:
    return setup.evolve(amp_dtype=recipe.dtype)


@register_handler(GradAccum, "torch")
def _grad_accum(recipe: GradAccum, setup: TrainSetup, context: ApplyContext) -> TrainSetup:
    return setup.evolve(micro_batches=recipe.steps)


@register_handler(Ddp, "torch")
def _ddp(recipe: Ddp, setup: TrainSetup, context: ApplyContext) -> TrainSetup:
    return setup.evolve(world_size=recipe.world_size)


@contextlib.contextmanager
def threads(n: int):
    """torch's intra-op threads set to `n` for the block, then put back."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def plan(module: nn.Module, pipeline: Any, context: ApplyContext | None = None) -> TrainSetup:
    """The training setup a pipeline of training recipes describes (each recipe through its handler)."""
    return pipeline.apply(TrainSetup(module), context)


def batch_order(n_samples: int, cfg: TrainConfig) -> list[np.ndarray]:
    """The same sequence of batch indices for every trial (seeded), warm-up steps included."""
    rng = np.random.default_rng(cfg.seed)
    order, batches = np.array([], dtype=int), []
    for _ in range(cfg.warmup_steps + cfg.steps + 1):
        if len(order) < cfg.batch_size:
            order = np.concatenate([order, rng.permutation(n_samples)])
        batches.append(order[:cfg.batch_size])
        order = order[cfg.batch_size:]
    return batches


class _Trainer:
    """One model under a set of training recipes: `step(x, y)` runs one optimizer step and returns the loss."""

    def __init__(self, setup: TrainSetup, cfg: TrainConfig, ddp_rank: int | None = None):
        self.cfg, self.notes = cfg, []
        torch.manual_seed(cfg.seed)
        self.model = copy.deepcopy(setup.module).to(cfg.device).train()
        self.channels_last = setup.channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward_module = self.model
        if ddp_rank is not None:
            from torch.nn.parallel import DistributedDataParallel

            self.forward_module = DistributedDataParallel(self.model)
        if setup.compiled:
            self.forward_module = torch.compile(self.forward_module)
        if setup.checkpoint_segments:
            from torch.utils.checkpoint import checkpoint_sequential

            segments = setup.checkpoint_segments
            self.forward = lambda x: checkpoint_sequential(self.model, segments, x, use_reentrant=False)
        else:
            self.forward = self.forward_module
        self.autocast_dtype = None
        self.scaler = None
        if setup.amp_dtype:
            cuda = cfg.device.startswith("cuda")
            dtype = setup.amp_dtype if setup.amp_dtype != "auto" else ("fp16" if cuda else "bf16")
            self.autocast_dtype = torch.float16 if dtype == "fp16" else torch.bfloat16
            if dtype == "fp16" and cuda:
                self.scaler = torch.amp.GradScaler("cuda")
        self.micro = setup.micro_batches
        if cfg.batch_size % self.micro:
            raise UnsupportedError(f"grad-accum({self.micro})", f"the batch of {cfg.batch_size} does not split into "
                                                               f"{self.micro} equal micro-batches")
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.loss_fn = nn.CrossEntropyLoss()

    def _input(self, x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x)).to(self.cfg.device)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last and t.dim() == 4 else t

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for xs, ys in zip(np.split(x, self.micro), np.split(y, self.micro)):
            with (torch.autocast(self.cfg.device.split(":")[0], dtype=self.autocast_dtype)
                  if self.autocast_dtype else contextlib.nullcontext()):
                loss = self.loss_fn(self.forward(self._input(xs)).float(),
                                    torch.from_numpy(ys).to(self.cfg.device)) / self.micro
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            total += float(loss.detach())
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return total

    def sync(self) -> None:
        if self.cfg.device.startswith("cuda"):
            torch.cuda.synchronize()

    def peak_memory(self, x: np.ndarray, y: np.ndarray) -> int:
        """Peak of live allocations during one more optimizer step (activations, gradients, optimizer state)."""
        if self.cfg.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            self.step(x, y)
            return int(torch.cuda.max_memory_allocated() - base)
        return profiled_peak_bytes(lambda: self.step(x, y))

    def outputs(self, x: np.ndarray) -> np.ndarray:
        self.model.eval()
        with torch.inference_mode():
            out = [self.model(self._input(x[i:i + 256])).float().cpu().numpy() for i in range(0, len(x), 256)]
        self.model.train()
        return np.concatenate(out)


def train(setup: TrainSetup, data: dict, cfg: TrainConfig, ddp_rank: int | None = None,
          world_size: int = 1) -> dict[str, Any]:
    """Time `cfg.steps` optimizer steps after `cfg.warmup_steps`; the first step's time is reported apart."""
    x, y = data["train"]
    trainer = _Trainer(setup, cfg, ddp_rank)
    batches = batch_order(len(x), cfg)
    step_ms, losses = [], []
    first_ms = None
    for i, idx in enumerate(batches[:cfg.warmup_steps + cfg.steps]):
        if ddp_rank is not None:
            idx = idx[ddp_rank::world_size]  # each rank takes its share of the same global batch
        started = time.perf_counter()
        loss = trainer.step(x[idx], y[idx])
        trainer.sync()
        elapsed = (time.perf_counter() - started) * 1e3
        if i == 0:
            first_ms = elapsed
        if i >= cfg.warmup_steps:
            step_ms.append(elapsed)
        losses.append(loss)
    last = batches[-1] if ddp_rank is None else batches[-1][ddp_rank::world_size]
    peak = trainer.peak_memory(x[last], y[last])
    return {"step_ms": step_ms, "first_step_ms": first_ms, "losses": losses, "peak_mem_bytes": peak,
            "outputs": trainer.outputs(data["eval"]) if (ddp_rank in (None, 0)) else None,
            "notes": trainer.notes}


def _ddp_worker(rank: int, world_size: int, payload_path: str, result_path: str, port: int) -> None:
    import cloudpickle
    import torch.distributed as dist

    setup, data, cfg = cloudpickle.loads(Path(payload_path).read_bytes())
    torch.set_num_threads(max(1, cfg.threads // world_size))
    backend = "nccl" if cfg.device.startswith("cuda") else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        result = train(setup, data, cfg, ddp_rank=rank, world_size=world_size)
    finally:
        dist.destroy_process_group()
    if rank == 0:
        result["outputs"] = result["outputs"].tolist()
        Path(result_path).write_text(json.dumps(result))


def train_ddp(setup: TrainSetup, data: dict, cfg: TrainConfig) -> dict[str, Any]:
    """`setup.world_size` local processes under DistributedDataParallel; rank 0 reports."""
    import tempfile

    import cloudpickle
    import torch.multiprocessing as mp

    from ..._net import free_port

    world_size = setup.world_size
    with tempfile.TemporaryDirectory(prefix="wb-ddp-") as tmp:
        payload, result = os.path.join(tmp, "payload.pkl"), os.path.join(tmp, "result.json")
        Path(payload).write_bytes(cloudpickle.dumps((setup, data, cfg)))
        mp.start_processes(_ddp_worker, args=(world_size, payload, result, free_port()), nprocs=world_size,
                           join=True, start_method="spawn")
        out = json.loads(Path(result).read_text())
    out["outputs"] = np.asarray(out["outputs"], dtype=np.float32)
    return out
