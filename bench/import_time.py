"""Start-up cost before and after a change: `import rope_viz`, importing the library's public modules, and
opening the app's Home page (AppTest, first run), each in a fresh Python process, the two checkouts taking
turns so both see the same machine load. Also says whether transformers got imported (it must not be:
Hugging Face towers import it on first use).

Usage: python bench/import_time.py --before /path/to/older/checkout [--runs 5]
(an older checkout: e.g. `git worktree add /tmp/before <commit>`; both run with this interpreter)
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

PROBES = {
    "import rope_viz": "import rope_viz",
    "import the library": "from rope_viz import rope, models, capture, data, sweep, positions, families",
    "open Home (AppTest)": ("from streamlit.testing.v1 import AppTest\n"
                            "at = AppTest.from_file('app.py', default_timeout=300)\n"
                            "t = time.perf_counter(); at.run(); assert not at.exception, at.exception\n"
                            "print('APP', time.perf_counter() - t)"),
}
TEMPLATE = ("import time, sys\nt0 = time.perf_counter()\n{code}\n"
            "print('TOTAL', time.perf_counter() - t0)\nprint('TRANSFORMERS', 'transformers' in sys.modules)\n")


def run(checkout: Path, code: str) -> tuple[float, bool]:
    out = subprocess.run([sys.executable, "-c", TEMPLATE.format(code=code)], cwd=checkout, capture_output=True,
                         text=True, env={"PYTHONPATH": str(checkout), "PATH": "/usr/bin:/bin"}, check=True).stdout
    values = dict(line.split(" ", 1) for line in out.splitlines() if line.split(" ", 1)[0] in ("TOTAL", "TRANSFORMERS"))
    return float(values["TOTAL"]), values["TRANSFORMERS"] == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="an older checkout of rope-viz")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    after = Path(__file__).resolve().parents[1]
    print(f"{'probe':24} {'before (s)':>11} {'after (s)':>10} {'after/before':>13}  transformers imported (after)")
    for name, code in PROBES.items():
        times = {"before": [], "after": []}
        imported = False
        for _ in range(args.runs):
            for label, checkout in (("before", args.before), ("after", after)):
                seconds, loaded = run(checkout, code)
                times[label].append(seconds)
                imported |= loaded and label == "after"
        b, a = statistics.median(times["before"]), statistics.median(times["after"])
        print(f"{name:24} {b:11.2f} {a:10.2f} {a / b:13.3f}  {imported}")


if __name__ == "__main__":
    main()
