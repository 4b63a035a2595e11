"""Integrated Gradients' chosen steps on the bundled models and the sample scenes (assets/images).

For each model and scene: the steps IG doubled to (from 32, cap 512) until |delta| <= 1% of the
logit gap |f(x) - f(baseline)| for the predicted class, the delta, the gap, and the time taken.
Usage: python bench/ig_steps.py [--device cpu]
"""
from __future__ import annotations

import argparse
import time

from PIL import Image

from rope_viz import attribution, models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=models.default_device())
    args = parser.parse_args()
    scenes = sorted((models.ASSETS_DIR / "images").glob("scene_*.png"))
    print(f"IG steps chosen (start {attribution.IG_START_STEPS}, doubling, cap {attribution.OPTIONS['ig']['max_steps']}, "
          f"tolerance 1% of the logit gap), predicted class, mean baseline, {models.device_description(args.device)}")
    print(f"{'model':24} {'scene':30} {'steps':>5} {'delta':>10} {'logit gap':>10} {'|delta|/gap':>11} {'capped':>6} {'s':>6}")
    for spec in [s for s in models.list_models() if s.source == "bundled"]:
        loaded = models.load_model(spec.name, device=args.device)
        chosen = []
        for path in scenes:
            x = loaded.preprocess(Image.open(path), spec.train_res)
            start = time.perf_counter()
            result = attribution.attribute(loaded, x, "ig")
            seconds = time.perf_counter() - start
            delta, gap = float(result.delta[0]), float(result.logit_gap[0])
            chosen.append(result.steps)
            print(f"{spec.name:24} {path.stem[6:]:30} {result.steps:5d} {delta:10.2e} {gap:10.3f} "
                  f"{abs(delta) / abs(gap):11.2%} {str(result.capped):>6} {seconds:6.2f}")
        print(f"{spec.name:24} steps chosen: {sorted(chosen)}")


if __name__ == "__main__":
    main()
