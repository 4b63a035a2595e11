"""Experiment: why every bundled model collapses on the 2x canvas (128 px for 64 px-trained models).

Each candidate cause gets a number on the same held-out scenes (the first N of data.EVAL_SEEDS):
- top-1 on canvas variants that remove one difference (rope_viz.collapse.VARIANTS): distractors
  outside the frame, everything new outside the frame, where in the canvas the labelled pair sits;
- the log-N logit scale at inference (attention dilution), and the CLS query's attention entropy;
- CLS versus average pooling: linear probes on the frozen final-norm features, fitted on 64 px
  training scenes, scored at 64 px and on the 128 px canvas.
Usage: python bench/canvas_collapse.py [--limit 500] [--resolutions 64 96 128] [--out collapse.json]
Prints one table per measurement and writes all numbers as JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch

from rope_viz import data, models, positions, sweep
from rope_viz.measure import collapse


def top1(module, images, labels, spec) -> float:
    hits, _, n = sweep.count_correct(module, images, labels, spec.mean, spec.std, "cpu")
    return round(100 * hits / n, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[s.name for s in models.list_bundled()])
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 96, 128])
    parser.add_argument("--probe-scenes", type=int, default=2000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    seeds = range(data.EVAL_SEEDS.start, data.EVAL_SEEDS.start + args.limit)
    started = time.perf_counter()
    scenes = {(r, v): collapse.variant_tensors(seeds, r, v) for r in args.resolutions for v in collapse.VARIANTS}
    probe_train = data.render_batch(range(args.probe_scenes), 64, "canvas")  # training seeds, 64 px
    print(f"rendered in {time.perf_counter() - started:.0f} s")
    results = {"limit": args.limit, "resolutions": args.resolutions, "models": {}}
    for name in args.models:
        loaded = models.load_model(name)
        spec, module = loaded.spec, loaded.module
        row = {"top1": {}, "top1_log_n": {}, "top1_shifted": {}, "top1_shifted_log_n": {}, "log_n_factor": {},
               "cls_entropy": {}, "probe": {}}
        for r in args.resolutions:
            grid, train = (r // spec.patch_size,) * 2, (spec.train_res // spec.patch_size,) * 2
            factor = collapse.log_n_scale(module, grid, train)
            row["log_n_factor"][r] = round(factor, 3)
            row["top1"][r] = {v: top1(module, *scenes[(r, v)], spec) for v in collapse.VARIANTS}
            with positions.apply_method(module, "log_n", grid, train):
                row["top1_log_n"][r] = top1(module, *scenes[(r, "canvas")], spec)
            if module.rope is not None:  # the frame's patches at the positions they had in training
                offset = ((r - spec.train_res) / 2 / spec.patch_size,) * 2
                with collapse.shifted_positions(module, offset, grid):
                    row["top1_shifted"][r] = top1(module, *scenes[(r, "canvas")], spec)
                    with positions.scale_logits(module, factor):  # both causes removed together
                        row["top1_shifted_log_n"][r] = top1(module, *scenes[(r, "canvas")], spec)
            entropy = collapse.cls_attention_entropy(loaded, scenes[(r, "canvas")][0][:128])
            n_tokens = (r // spec.patch_size) ** 2 + 1
            row["cls_entropy"][r] = {"nats": [round(float(e), 3) for e in entropy],
                                     "fraction_of_log_n": [round(float(e) / math.log(n_tokens), 3) for e in entropy]}
        # CLS versus average pooling: the same linear probe on each, fitted at 64 px.
        cls_train, avg_train = collapse.pooled_features(module, probe_train[0], spec.mean, spec.std)
        probes = {"cls": collapse.fit_linear_probe(cls_train, probe_train[1], len(data.CLASS_NAMES)),
                  "avg": collapse.fit_linear_probe(avg_train, probe_train[1], len(data.CLASS_NAMES))}
        for r in args.resolutions:
            cls_f, avg_f = collapse.pooled_features(module, scenes[(r, "canvas")][0], spec.mean, spec.std)
            labels = scenes[(r, "canvas")][1]
            row["probe"][r] = {k: round(100 * float((probes[k](f).argmax(-1) == labels).float().mean()), 1)
                               for k, f in (("cls", cls_f), ("avg", avg_f))}
        results["models"][name] = row
        print(f"\n{name}  ({time.perf_counter() - started:.0f} s)")
        print(f"{'px':>4} " + " ".join(f"{v:>20}" for v in collapse.VARIANTS)
              + f" {'log-N q':>8} {'shifted':>8} {'shift+logN':>10} {'probe cls':>9} {'probe avg':>9}")
        for r in args.resolutions:
            print(f"{r:>4} " + " ".join(f"{row['top1'][r][v]:>20}" for v in collapse.VARIANTS)
                  + f" {row['top1_log_n'][r]:>8} {row['top1_shifted'].get(r, '-'):>8}"
                  f" {row['top1_shifted_log_n'].get(r, '-'):>10} {row['probe'][r]['cls']:>9} {row['probe'][r]['avg']:>9}")
        print("CLS entropy / log N per layer: " + "; ".join(
            f"{r} px " + " ".join(f"{e:.2f}" for e in row["cls_entropy"][r]["fraction_of_log_n"]) for r in args.resolutions))
    results["seconds"] = round(time.perf_counter() - started, 1)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
