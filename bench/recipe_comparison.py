"""The old recipe (one object scale) against today's (scale augmentation) on the same held-out scenes.

Both tables are model-card evaluations: top-1 on the first 2,000 scenes of data.EVAL_SEEDS, zoom and
canvas, with the paper's default position method (extrapolate). The old cards' tables were saved to
bench/recipe_old_cards.json before the models were retrained (commit b8f4297 has those models).
Usage: python bench/recipe_comparison.py [--resolutions 64 96 128 192] [--out comparison.md]
Prints a markdown table: old -> new top-1 per model, mode and resolution.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rope_viz import models

OLD = Path(__file__).with_name("recipe_old_cards.json")


def comparison_rows(old: dict, new: dict, resolutions) -> list[dict]:
    """One row per (model, mode): 'old -> new' top-1 at each resolution. Cards as dicts keyed by name."""
    rows = []
    for name, card in new.items():
        for mode in ("zoom", "canvas"):
            row = {"model": card["label"], "mode": mode}
            for r in resolutions:
                before, after = old[name]["eval"]["top1"][mode][str(r)], card["eval"]["top1"][mode][str(r)]
                row[f"{r} px"] = f"{before:.1f} → {after:.1f}"
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[c]) for c in head) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 96, 128, 192])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    old = json.loads(OLD.read_text())
    new = {p.stem: json.loads(p.read_text()) for p in sorted(models.BUNDLED_DIR.glob("*.json"))}
    text = markdown(comparison_rows(old, new, args.resolutions))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
