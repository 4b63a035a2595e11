"""The closing table: bundled models x position methods x sizes, zoom and canvas, top-1 on held-out scenes.

Cells that are the same computation by construction are run once and copied, and say so:
- on the training grid (64 px) every method is the model itself (tests/test_positions.py);
- 'normalised' (DINOv3 'separate') equals 'interpolate' on square grids (tests/test_positions.py);
- APE-only models have no frequencies: only yarn's temperature and log_n's scale change them.
Usage: python bench/methods_table.py [--limit 300] [--resolutions 64 128 192] [--out table.csv]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from rope_viz import models, positions, sweep
from rope_viz.app import views

MODELS = ("scenes-ape", "scenes-rope-axial", "scenes-rope-mixed", "scenes-rope-axial-ape", "scenes-rope-mixed-ape")


def same_as(spec: models.ModelSpec, method: str, resolution: int) -> str | None:
    """The method whose cell this one equals by construction, or None when it must be run."""
    if resolution == spec.train_res and method != "extrapolate":
        return "extrapolate"
    if method == "normalised":
        return "interpolate" if spec.pos != "ape" else "extrapolate"
    if spec.pos == "ape" and method in ("interpolate", "ntk"):
        return "extrapolate"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 128, 192])
    parser.add_argument("--modes", nargs="+", default=["zoom", "canvas"])
    parser.add_argument("--out", default="methods_table.csv")
    args = parser.parse_args()
    methods = list(positions.METHODS)
    rows, started = [], time.perf_counter()
    for mode in args.modes:
        for name in MODELS:
            loaded = models.load_model(name)
            done = {}
            for method in methods:
                for r in args.resolutions:
                    twin = same_as(loaded.spec, method, r)
                    if twin is not None and (twin, r) in done:
                        row = {**done[(twin, r)], "method": method, "position": method, "seconds": 0.0,
                               "note": f"= {twin} by construction"}
                    else:
                        row = {**sweep.evaluate_cell(loaded, r, f"shapes:{mode}", args.limit, method=method),
                               "note": ""}
                    done[(method, r)] = row
                    rows.append(row)
                    print(f"{mode},{name},{method},{r},{row['top1']},{row['correct1']},{row['n']},{row['note']}",
                          flush=True)  # kept even if the run is cut short
            print(f"{mode} {name}: done ({time.perf_counter() - started:.0f} s)", flush=True)
    Path(args.out).write_text(_csv(rows))
    print_table(rows, args.resolutions, methods, args.modes)


def _csv(rows: list[dict]) -> str:
    return views.to_csv(rows, list(sweep.CSV_COLUMNS) + ["note"])


def print_table(rows, resolutions, methods, modes) -> None:
    """Markdown: one line per model x method, columns mode x resolution (top-1 %)."""
    head = " | ".join(f"{m} {r}" for m in modes for r in resolutions)
    print(f"| model | method | {head} |")
    print("|---|---|" + "---|" * (len(modes) * len(resolutions)))
    index = {(r["model"], r["method"], r["mode"], r["resolution"]): r for r in rows}
    for name in MODELS:
        for method in methods:
            cells = []
            for m in modes:
                for res in resolutions:
                    row = index.get((name, method, m, res))
                    cells.append("" if row is None else f"{row['top1']:.1f}" + ("*" if row["note"] else ""))
            print(f"| {name} | {method} | " + " | ".join(cells) + " |")
    print("* = equal to another cell by construction (copied, not re-run)")


if __name__ == "__main__":
    main()
