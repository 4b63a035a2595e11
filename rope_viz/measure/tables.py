"""Rows of results as CSV text (the CLI, the sweep and every page's download write the same format)."""
from __future__ import annotations

import csv
import io


def to_csv(rows: list[dict], columns=None) -> str:
    """Rows as CSV text; columns default to the first row's keys, extra keys are left out."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns or rows[0]), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
