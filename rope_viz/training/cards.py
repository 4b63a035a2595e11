"""Model cards of the bundled models: the held-out accuracy table and how to reproduce it.

The table is measured by `python -m rope_viz eval --model NAME --write`, through the same
sweep.accuracy_sweep the Resolution page runs, so a card, the CLI and the page agree.
"""
from __future__ import annotations

import json
from pathlib import Path

from rope_viz import models
from rope_viz.measure import sweep

CARD_RESOLUTIONS = (32, 48, 64, 96, 128, 192)
CARD_MODES = ("zoom", "canvas")


def evaluate_for_card(name: str, resolutions=CARD_RESOLUTIONS, limit: int = 2000, device: str | None = None,
                      progress=None) -> dict:
    """Top-1 and top-5 (percent) on the first `limit` held-out scenes, per mode and resolution.

    Returns {"limit", "position", "top1": {mode: {res: pct}}, "top5": {...}, "command"}.
    """
    table = {"limit": limit, "position": "extrapolate", "top1": {}, "top5": {},
             "device": models.device_description(device or models.default_device()),
             "command": f"python -m rope_viz eval --model {name} --limit {limit} --write"}
    done_before = 0
    for mode in CARD_MODES:
        def step(done, total, row, offset=done_before):
            if progress is not None:
                progress(offset + done, total * len(CARD_MODES), row)
        rows = sweep.accuracy_sweep([name], list(resolutions), dataset=f"shapes:{mode}", limit=limit,
                                    device=device, progress=step, methods=[table["position"]])
        table["top1"][mode] = {str(r["resolution"]): r["top1"] for r in rows}
        table["top5"][mode] = {str(r["resolution"]): r["top5"] for r in rows}
        done_before += len(rows)
    return table


def format_table(table: dict) -> str:
    """The top-1 table as aligned text: one row per mode, one column per resolution."""
    resolutions = list(next(iter(table["top1"].values())))
    lines = [f"top-1 % on {table['limit']} held-out scenes", "mode    " + "".join(f"{r + ' px':>9}" for r in resolutions)]
    for mode, cells in table["top1"].items():
        lines.append(f"{mode:8}" + "".join(f"{cells[r]:>9.2f}" for r in resolutions))
    return "\n".join(lines)


def write_card_eval(spec: models.ModelSpec, table: dict) -> Path:
    """Store the table under "eval" in the model's card (JSON beside its weights)."""
    path = Path(spec.path).with_suffix(".json")
    card = json.loads(path.read_text())
    card["eval"] = table
    path.write_text(json.dumps(card, indent=2) + "\n")
    return path


def markdown_table(specs: list[models.ModelSpec]) -> str:
    """The cards' top-1 tables as one Markdown table (rows: model x mode, columns: resolutions)."""
    resolutions = [str(r) for r in CARD_RESOLUTIONS]
    lines = ["| model | mode | " + " | ".join(f"{r} px" for r in resolutions) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in resolutions) + " |"]
    for spec in specs:
        table = spec.card.get("eval")
        if not table:
            continue
        for mode in CARD_MODES:
            cells = [f"**{table['top1'][mode][r]:.1f}**" if int(r) == spec.train_res else f"{table['top1'][mode][r]:.1f}"
                     for r in resolutions]
            lines.append(f"| {spec.name} | {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
