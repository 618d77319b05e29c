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


def _find(steps, cls):
    return next((s for s in steps if isinstance(s, cls)), None)


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

    def __init__(self, module: nn.Module, steps, cfg: TrainConfig, ddp_rank: int | None = None):
        self.cfg, self.notes = cfg, []
        torch.manual_seed(cfg.seed)
        self.model = copy.deepcopy(module).to(cfg.device).train()
        self.channels_last = _find(steps, TrainChannelsLast) is not None
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        checkpoint, compiled = _find(steps, Checkpoint), _find(steps, TrainCompile)
        if checkpoint and not isinstance(self.model, nn.Sequential):
            raise UnsupportedError(checkpoint.to_spec(), f"it checkpoints the segments of an nn.Sequential; "
                                                         f"this model is a {type(self.model).__name__}")
        if checkpoint and compiled:
            raise UnsupportedError("checkpoint + compile", "not combined here: compile the model or checkpoint it")
        self.forward_module = self.model
        if ddp_rank is not None:
            from torch.nn.parallel import DistributedDataParallel

            self.forward_module = DistributedDataParallel(self.model)
        if compiled:
            self.forward_module = torch.compile(self.forward_module)
        if checkpoint:
            from torch.utils.checkpoint import checkpoint_sequential

            segments = min(checkpoint.segments, len(self.model))
            self.forward = lambda x: checkpoint_sequential(self.model, segments, x, use_reentrant=False)
        else:
            self.forward = self.forward_module
        amp = _find(steps, Amp)
        self.autocast_dtype = None
        self.scaler = None
        if amp:
            cuda = cfg.device.startswith("cuda")
            dtype = amp.dtype if amp.dtype != "auto" else ("fp16" if cuda else "bf16")
            self.autocast_dtype = torch.float16 if dtype == "fp16" else torch.bfloat16
            if dtype == "fp16" and cuda:
                self.scaler = torch.amp.GradScaler("cuda")
        accum = _find(steps, GradAccum)
        self.micro = accum.steps if accum else 1
        if cfg.batch_size % self.micro:
            raise UnsupportedError(accum.to_spec(), f"the batch of {cfg.batch_size} does not split into "
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


def train(module: nn.Module, steps, data: dict, cfg: TrainConfig, ddp_rank: int | None = None,
          world_size: int = 1) -> dict[str, Any]:
    """Time `cfg.steps` optimizer steps after `cfg.warmup_steps`; the first step's time is reported apart."""
    x, y = data["train"]
    trainer = _Trainer(module, steps, cfg, ddp_rank)
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

    module, steps, data, cfg = cloudpickle.loads(Path(payload_path).read_bytes())
    torch.set_num_threads(max(1, cfg.threads // world_size))
    backend = "nccl" if cfg.device.startswith("cuda") else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        result = train(module, steps, data, cfg, ddp_rank=rank, world_size=world_size)
    finally:
        dist.destroy_process_group()
    if rank == 0:
        result["outputs"] = result["outputs"].tolist()
        Path(result_path).write_text(json.dumps(result))


def train_ddp(module: nn.Module, steps, data: dict, cfg: TrainConfig, world_size: int) -> dict[str, Any]:
    """`world_size` local processes under DistributedDataParallel; rank 0 reports."""
    import tempfile

    import cloudpickle
    import torch.multiprocessing as mp

    from ...app import free_port

    rest = tuple(s for s in steps if not isinstance(s, Ddp))
    with tempfile.TemporaryDirectory(prefix="wb-ddp-") as tmp:
        payload, result = os.path.join(tmp, "payload.pkl"), os.path.join(tmp, "result.json")
        Path(payload).write_bytes(cloudpickle.dumps((module, rest, data, cfg)))
        mp.start_processes(_ddp_worker, args=(world_size, payload, result, free_port()), nprocs=world_size,
                           join=True, start_method="spawn")
        out = json.loads(Path(result).read_text())
    out["outputs"] = np.asarray(out["outputs"], dtype=np.float32)
    return out
