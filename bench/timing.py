"""The one timing helper the benchmarks share: best wall time of a few runs, CUDA-synchronised."""
from __future__ import annotations

import time

import torch


def best_of(fn, repeats: int, device: str) -> float:
    """Seconds of the fastest of `repeats` calls of fn() (the least disturbed by other work)."""
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best
