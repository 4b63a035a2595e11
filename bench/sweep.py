"""Benchmark: accuracy_sweep's images per second against a bare `model(x)` loop over the same batches.

Both run in this process on the same uint8 scene tensors, batch size, dtype and resolution; the
target is a ratio of at least 0.9. Then the time per image against the number of tokens.
Usage: python bench/sweep.py [--model scenes-rope-mixed] [--device cpu] [--limit 1024]
"""
from __future__ import annotations

import argparse
import time

import torch

from rope_viz import data, models, sweep


def bare_loop(module, images, mean, std, device, batch_size) -> float:
    """What a user would write: normalise, forward, argmax; seconds for the whole set."""
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].to(device).float().div_(255)
            module((x - mean_t) / std_t).argmax(-1).cpu()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="scenes-rope-mixed")
    parser.add_argument("--device", default=models.default_device())
    parser.add_argument("--limit", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64, 128, 192, 256])
    args = parser.parse_args()
    loaded = models.load_model(args.model, device=args.device)
    spec = loaded.spec
    print(f"{args.model}, N={args.limit}, batch {args.batch_size}, {models.device_description(args.device)}")
    print(f"{'px':>5} {'tokens':>6} {'sweep img/s':>12} {'bare img/s':>11} {'ratio':>6} {'ms/img':>7}")
    seeds = range(data.EVAL_SEEDS.start, data.EVAL_SEEDS.start + args.limit)
    for res in args.resolutions:
        images, _ = data.scene_tensors(seeds, res)  # rendered (or read) once, outside both timings
        bare_loop(loaded.module, images[:args.batch_size], spec.mean, spec.std, args.device, args.batch_size)
        t_bare = t_sweep = float("inf")
        for _ in range(3):  # interleaved, best of three each: both see the same machine state
            t_bare = min(t_bare, bare_loop(loaded.module, images, spec.mean, spec.std, args.device, args.batch_size))
            start = time.perf_counter()
            row = sweep.evaluate_cell(loaded, res, "shapes", args.limit, batch_size=args.batch_size)
            t_sweep = min(t_sweep, time.perf_counter() - start)
        ratio = t_bare / t_sweep
        tokens = (res // spec.patch_size) ** 2 + 1
        print(f"{res:>5} {tokens:>6} {row['n'] / t_sweep:>12.0f} {row['n'] / t_bare:>11.0f} {ratio:>6.2f} "
              f"{1e3 * t_sweep / row['n']:>7.2f}  {'PASS' if ratio >= 0.9 else 'FAIL'} (target >= 0.9)")


if __name__ == "__main__":
    main()
