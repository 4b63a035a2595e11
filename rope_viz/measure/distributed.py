"""Sweeps over many processes with torch.distributed: one shard of the eval set per process.

`torchrun --nproc_per_node N -m rope_viz sweep ...` starts N copies of the CLI. Each reads its
rank from the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK), evaluates a contiguous
block of the eval set (the same blocks on every run: no shuffling, no padding, so no image is
counted twice, unlike DistributedSampler's padded shards) and the counts (correct1, correct5, n)
are summed with one all-reduce per cell. Integer counts make the result equal one process exactly.
Backend: NCCL when the process has a GPU, gloo on CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Shard:
    """This process's place among `world` processes."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def bounds(self, n: int) -> tuple[int, int]:
        """[start, stop) of this rank's contiguous block of n items; blocks differ in size by at most one."""
        return n * self.rank // self.world, n * (self.rank + 1) // self.world

    def take(self, items):
        """This rank's block of a sequence (a range stays a range, so scene caching still works)."""
        start, stop = self.bounds(len(items))
        return items[start:stop]


SINGLE = Shard()


def launched_by_torchrun() -> bool:
    """True when the environment says this process is one of several (torchrun sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str | None = None) -> tuple[Shard, str]:
    """Join the process group torchrun describes; -> (shard, device for this process).

    Without torchrun (WORLD_SIZE unset or 1) nothing is initialised: (SINGLE, device).
    With CUDA each process takes GPU LOCAL_RANK and NCCL; otherwise gloo on CPU.
    """
    if not launched_by_torchrun():
        return SINGLE, device or ("cuda" if torch.cuda.is_available() else "cpu")
    use_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    else:
        device = "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Shard(dist.get_rank(), dist.get_world_size()), device


def shutdown() -> None:
    """Leave the process group (no-op when none was joined)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def sum_counts(counts: tuple[int, ...], shard: Shard, device: str) -> tuple[int, ...]:
    """Integer counts summed over all processes (identity for a single process).

    NCCL reduces only GPU tensors, so the counts travel on this process's device.
    Shapes: counts (K,) ints -> (K,) ints
    """
    if shard.world == 1:
        return tuple(counts)
    total = torch.tensor(counts, dtype=torch.int64, device=device)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return tuple(int(v) for v in total.tolist())


def max_over_processes(value: float, shard: Shard, device: str) -> float:
    """The largest value over all processes (a cell's wall time is its slowest shard's)."""
    if shard.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())
