"""Benchmark: a sweep on 1 process against the same sweep under torchrun on N gloo processes (CPU).

Both write a CSV; images/s is computed from the cells' own wall time (the 'seconds' column, the
slowest process's, so start-up and rendezvous are excluded) and, separately, from the whole command
(start-up included). The CSVs must agree on every count. Scenes are rendered once beforehand.
Usage: python bench/distributed_sweep.py [--model scenes-rope-mixed] [--nproc 2] [--limit 1024]
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rope_viz import data

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(prefix: list[str], args, out: Path, env: dict) -> tuple[list[dict], float]:
    command = [*prefix, "-m", "rope_viz", "sweep", "--models", args.model, "--resolutions",
               *map(str, args.resolutions), "--limit", str(args.limit), "--device", "cpu", "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    return list(csv.DictReader(io.StringIO(out.read_text()))), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="scenes-rope-mixed")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--limit", type=int, default=1024)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs of each; the fastest counts")
    args = parser.parse_args()
    seeds = range(data.EVAL_SEEDS.start, data.EVAL_SEEDS.start + args.limit)
    for r in args.resolutions:  # render (and cache) every block both runs will read, outside the timings
        data.scene_tensors(seeds, r)
        for rank in range(args.nproc):
            n = len(seeds)
            data.scene_tensors(seeds[n * rank // args.nproc:n * (rank + 1) // args.nproc], r)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    threads = os.cpu_count()
    best = {}  # kind -> (rows with the fastest cells, fastest whole command)

    def keep(kind, rows, seconds):
        old_rows, old_seconds = best.get(kind, (rows, seconds))
        best[kind] = ([min(a, b, key=lambda r: float(r["seconds"])) for a, b in zip(old_rows, rows)],
                      min(old_seconds, seconds))

    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):  # interleaved, so both see the same (shared) machine
            keep("one", *run([sys.executable], args, Path(tmp) / "one.csv", env))
            torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node",
                        str(args.nproc), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}"]
            # torchrun would set OMP_NUM_THREADS=1 itself; say it, so both runs use every core.
            keep("many", *run(torchrun, args, Path(tmp) / "many.csv",
                              {**env, "OMP_NUM_THREADS": str(max(1, threads // args.nproc))}))
    (single, t_single), (multi, t_multi) = best["one"], best["many"]
    same = [(r["correct1"], r["correct5"], r["n"]) for r in single] == \
           [(r["correct1"], r["correct5"], r["n"]) for r in multi]
    print(f"{args.model}, N={args.limit}, CPU with {threads} cores, best of {args.repeats}; 1 process ({threads} threads) vs "
          f"{args.nproc} gloo processes ({max(1, threads // args.nproc)} thread(s) each)")
    print(f"{'px':>5} {'1 proc img/s':>13} {f'{args.nproc} proc img/s':>13} {'speed-up':>9}")
    for a, b in zip(single, multi):
        ips_a, ips_b = int(a["n"]) / float(a["seconds"]), int(b["n"]) / float(b["seconds"])
        print(f"{a['resolution']:>5} {ips_a:>13.0f} {ips_b:>13.0f} {ips_b / ips_a:>9.2f}")
    total = sum(int(r["n"]) for r in single)
    print(f"whole command incl. start-up: {total / t_single:.0f} img/s (1 proc, {t_single:.1f} s), "
          f"{total / t_multi:.0f} img/s ({args.nproc} procs, {t_multi:.1f} s)")
    print(f"counts identical: {'PASS' if same else 'FAIL'}")


if __name__ == "__main__":
    main()
