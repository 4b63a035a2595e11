"""Benchmark: Integrated Gradients (32 steps) on a bundled model at 64 px; target at most 2 s on 2 CPU cores.

Usage: python bench/attribution.py [--model scenes-rope-mixed] [--device cpu] [--steps 32]
"""
from __future__ import annotations

import argparse
import time

import torch

from rope_viz import attribution, data, models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="scenes-rope-mixed")
    parser.add_argument("--device", default=models.default_device())
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    loaded = models.load_model(args.model, device=args.device)
    image, _ = data.render_scene(data.EVAL_SEEDS.start, loaded.spec.train_res)
    x = loaded.preprocess(image, loaded.spec.train_res)
    print(f"{args.model}, {loaded.spec.train_res} px, IG {args.steps} steps, internal batch 16, "
          f"{models.device_description(args.device)}, torch {torch.__version__}")
    times = {}
    for method in ("ig", "saliency", "smoothgrad", "occlusion", "gradcam", "rollout"):
        attribution.attribute(loaded, x, method, steps=args.steps)  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = attribution.attribute(loaded, x, method, steps=args.steps)
            best = min(best, time.perf_counter() - start)
        times[method] = best
        extra = f", |delta| {abs(float(result.delta[0])):.2e} logits" if result.delta is not None else ""
        print(f"  {method:10} {best:7.3f} s{extra}")
    print(f"IG {args.steps} steps: {times['ig']:.3f} s -> {'PASS' if times['ig'] <= 2.0 else 'FAIL'} (target <= 2 s)")


if __name__ == "__main__":
    main()
