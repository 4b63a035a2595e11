"""Every download button in the app leaves the script alone when clicked.

A click on a default download button reruns the session; the rerun replaces the file the browser is
about to fetch, and under load the browser then reports the download "canceled" (found by the
8-session load test). `on_click="ignore"` serves the file without a rerun.
"""
from __future__ import annotations

import ast

from conftest import ROOT

SOURCES = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "rope_viz").glob("*.py"))]


def download_buttons(path) -> list[ast.Call]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == "download_button"]


def test_the_app_has_download_buttons_to_check():
    assert sum(len(download_buttons(p)) for p in SOURCES) >= 7


def test_every_download_button_ignores_its_click():
    rerunning = []
    for path in SOURCES:
        for call in download_buttons(path):
            on_click = {k.arg: k.value for k in call.keywords}.get("on_click")
            if not (isinstance(on_click, ast.Constant) and on_click.value == "ignore"):
                rerunning.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert not rerunning, f"download buttons that rerun the session on click: {rerunning}"
