"""The lists written in the documents are the registries' lists: every family, page and method is there."""
from __future__ import annotations

import re

from conftest import ROOT
from rope_viz import adapters, attribution, positions
from rope_viz.app import navigation
from rope_viz.models import hub

README = (ROOT / "README.md").read_text()
ARCHITECTURE = ROOT / "ARCHITECTURE.md"


def table_rows(text: str, header_start: str) -> list[str]:
    """The first cells of a Markdown table whose header row starts with `header_start`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1].strip())
    return rows


def test_readme_family_table_has_every_adapter():
    rows = table_rows(README, "| family | rope in timm |")
    timm_adapters = [a for a in adapters.ADAPTERS if a.library == "timm"]
    missing = [a.label for a in timm_adapters if not any(row.startswith(a.label) for row in rows)]
    assert not missing, f"README's family table lacks {missing}"
    assert len(rows) == len(timm_adapters), rows


def test_hub_list_has_a_model_of_every_family():
    families = {adapters.adapter_of(hub.meta_module(name.split(".")[0])).key for name in hub.HUB_MODELS}
    assert families == {a.key for a in adapters.ADAPTERS if a.library == "timm"}


def test_readme_tour_has_every_page():
    tour = README[README.index("## A tour of the pages"):README.index("## Models")]
    missing = [p.title for p in (navigation.HOME, *navigation.PAGES) if f"- **{p.title}**" not in tour]
    assert not missing, f"README's tour lacks {missing}"
    assert all((ROOT / p.file).is_file() for p in navigation.PAGES)
    assert {p.file for p in navigation.PAGES} | {navigation.HOME.file} == {
        f"pages/{f.name}" for f in (ROOT / "pages").glob("*.py") if f.name != "shared.py"}


def test_readme_names_every_method_and_links_the_architecture():
    for name in positions.METHODS:
        assert f"`{name}`" in README or f" {name}" in README, name
    for record in attribution.METHODS.values():
        name = re.split(r" \(| on ", record.label)[0].lower()  # "Grad-CAM on a block" -> "grad-cam"
        assert name in " ".join(README.lower().split()), record.name
    assert "](ARCHITECTURE.md)" in README and ARCHITECTURE.is_file()
    assert "shared/DESIGN.md" not in README  # a clone has no ../shared
    text = ARCHITECTURE.read_text()
    for recipe in ("**A model family.**", "**A page.**", "**A position method.**", "**An attribution method.**"):
        assert recipe in text


def test_readme_tower_table_has_every_hugging_face_tower():
    rows = table_rows(README, "| tower | transformers class |")
    towers = [a for a in adapters.ADAPTERS if a.library == "transformers"]
    missing = [a.label for a in towers if not any(row.startswith(a.label) for row in rows)]
    assert not missing, f"README's tower table lacks {missing}"
    assert len(rows) == len(towers), rows
