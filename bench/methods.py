"""Benchmark: what a position method adds to sweep time, against extrapolation (no hooks), in one run.

The sweep's own inner step (sweep.count_correct inside positions.apply_method, as evaluate_cell runs
it) is timed on the same batch of held-out scenes, alternating extrapolate and the method batch by
batch so both see the same machine state; the ratio is the median over `--repeats` pairs, and the
best times are shown too. Target: ratio method / extrapolate <= 1.05 (methods add at most 5%).
On a shared machine `--clock cpu` (this process's CPU time) is steadier than wall time.
Usage: python bench/methods.py [--model scenes-rope-mixed] [--resolution 128] [--batch-size 128]
"""
from __future__ import annotations

import argparse
import statistics
import time

from rope_viz import data, models, positions, sweep

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def batch_seconds(loaded, images, labels, method: str, grid: int, train: int, clock) -> float:
    """One batch through the sweep's counting step under `method`."""
    start = clock()
    with positions.apply_method(loaded.module, method, (grid, grid), (train, train)):
        sweep.count_correct(loaded.module, images, labels, loaded.spec.mean, loaded.spec.std, loaded.device,
                            batch_size=len(labels))
    return clock() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="scenes-rope-mixed")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--device", default=models.default_device())
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall")
    args = parser.parse_args()
    clock = CLOCKS[args.clock]
    loaded = models.load_model(args.model, device=args.device)
    images, labels = data.scene_tensors(data.EVAL_SEEDS[:args.batch_size], args.resolution)  # outside timings
    grid, train = args.resolution // loaded.spec.patch_size, loaded.spec.train_res // loaded.spec.patch_size
    others = [m for m in positions.METHODS if m != "extrapolate"]
    batch_seconds(loaded, images, labels, "extrapolate", grid, train, clock)  # warm-up
    pairs = {m: [] for m in others}
    for _ in range(args.repeats):
        for method in others:
            base = batch_seconds(loaded, images, labels, "extrapolate", grid, train, clock)
            pairs[method].append((batch_seconds(loaded, images, labels, method, grid, train, clock), base))
    print(f"{args.model} at {args.resolution} px ({grid} x {grid} patches, trained {train} x {train}), batch "
          f"{args.batch_size}, {models.device_description(args.device)}, {args.repeats} alternating pairs, "
          f"{args.clock} clock")
    print(f"{'method':>12} {'best s':>7} {'extrap best s':>14} {'median ratio':>13}")
    for method in others:
        ratio = statistics.median(m / b for m, b in pairs[method])
        best_m, best_b = min(m for m, _ in pairs[method]), min(b for _, b in pairs[method])
        print(f"{method:>12} {best_m:>7.3f} {best_b:>14.3f} {ratio:>13.3f}  "
              f"{'PASS' if ratio <= 1.05 else 'FAIL'} (target <= 1.05)")


if __name__ == "__main__":
    main()
