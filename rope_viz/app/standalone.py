"""The attention explorer as ONE self-contained HTML file: opens offline from file://, no server, no Python.

The file holds the SAME frontend sources the app serves (rope_viz/app/frontend/explorer.{css,html,js}),
read from disk when the file is written and embedded verbatim: the CSS in a <style>, the HTML in the
body, the JS as the text of an inert <script type="text/plain"> that a small loader imports as an ES
module (through a Blob URL, or a data: URL where Blob modules are refused) to get its default export.
Each payload (explorer.pack's bytes: one layer's q and k) is embedded as base64 and handed to that
export as {data, parentElement, setTriggerValue: no-op}, exactly as Streamlit's component does; with
several payloads (one per layer) a select switches between them. No Streamlit here.
"""
from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from rope_viz.app import explorer
from rope_viz.measure import capture

FRONTEND = Path(__file__).resolve().parent / "frontend"
SOURCES = ("explorer.css", "explorer.html", "explorer.js")
# Sequences that would end or confuse the raw-text element a source is embedded in.
_BREAKERS = {"style": ("</style",), "script": ("</script", "<script", "<!--")}

LOADER = """
const text = (id) => document.getElementById(id).textContent;
const source = text("rvx-source");
async function loadModule() {
  try {
    const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
    return await import(url);
  } catch (err) {
    return await import("data:text/javascript;charset=utf-8," + encodeURIComponent(source));
  }
}
function decode(b64) {
  const raw = atob(b64), bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}
const mount = (await loadModule()).default;
const labels = JSON.parse(text("rvx-labels"));
const parentElement = document.getElementById("rvx-root");
const show = (i) => mount({ data: decode(text("rvx-data-" + i)), parentElement, setTriggerValue: () => {} });
const pick = document.getElementById("rvx-pick");
if (labels.length > 1) {
  labels.forEach((label, i) => pick.add(new Option(label, String(i))));
  pick.addEventListener("change", () => show(Number(pick.value)));
} else pick.parentElement.style.display = "none";
show(0);
window.ropeExplorerReady = true;
"""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body {{ font-family: sans-serif; margin: 24px; color: #262730; }} h1 {{ font-size: 1.3rem; }}
.rvx-note {{ font-size: 0.8rem; opacity: 0.75; max-width: 60em; }}</style>
<style>
{css}</style></head>
<body><h1>{title}</h1>
<p class="rvx-note">Move the mouse over a map: the patch under it is the query; a click pins it. Every map is
softmax(q K<sup>T</sup> &times; scale) of the model's own post-RoPE queries and keys, computed here in the browser
(written by rope-viz; works offline).</p>
<label class="rvx-note">layer <select id="rvx-pick"></select></label>
<div id="rvx-root">
{body}</div>
<script type="application/json" id="rvx-labels">{labels}</script>
{data}
<script type="text/plain" id="rvx-source">
{js}</script>
<script type="module">{loader}</script>
</body></html>
"""


def source(name: str) -> str:
    """One frontend file's text, as the app serves it."""
    return (FRONTEND / name).read_text()


def _embeddable(text: str, element: str, name: str) -> str:
    low = text.lower()
    bad = [b for b in _BREAKERS[element] if b in low]
    if bad:
        raise ValueError(f"{name} contains {bad[0]!r} and cannot be embedded in a <{element}> verbatim.")
    return text


def explorer_html(payload: bytes | Mapping[str, bytes], title: str) -> str:
    """One self-contained HTML page showing the explorer for `payload` (explorer.pack's bytes), or for
    several payloads {label: bytes} (e.g. one per layer) with a select to switch between them."""
    payloads = {"": payload} if isinstance(payload, (bytes, bytearray, memoryview)) else dict(payload)
    if not payloads:
        raise ValueError("No payload to show.")
    for raw in payloads.values():
        explorer.unpack_header(bytes(raw))  # fails early on something that is not a payload
    data = "\n".join(f'<script type="text/plain" id="rvx-data-{i}">{base64.b64encode(bytes(raw)).decode()}</script>'
                     for i, raw in enumerate(payloads.values()))
    labels = json.dumps(list(payloads)).replace("</", "<\\/")
    return PAGE.format(title=html.escape(title), css=_embeddable(source("explorer.css"), "style", "explorer.css"),
                       body=source("explorer.html"), labels=labels, data=data,
                       js=_embeddable(source("explorer.js"), "script", "explorer.js"), loader=LOADER)


def layer_payloads(captures: dict[str, capture.QK], layers, pixels: np.ndarray, patch: int, state: dict,
                   dtype: str = "float32", heads: list[int] | None = None) -> dict[str, bytes]:
    """{"layer i": payload} for each of `layers`: the models' q and k of that layer (one pack each), only
    `heads` of each (default: all; see explorer.pack). Layers and heads are what bound the file's size.

    Shapes: pixels (R, R, 3) uint8; each capture's q, k (B, L, H, N, D)
    """
    base = state.get("payload_id", "standalone")
    return {f"layer {layer}": explorer.pack(captures, layer, pixels, patch,
                                            {**state, "payload_id": f"{base}|layer {layer}|{heads}"}, dtype, heads)
            for layer in layers}


def save_html(path: str | os.PathLike, payload: bytes | Mapping[str, bytes], title: str = "rope-viz attention") -> Path:
    """Write explorer_html(payload, title) to `path` (UTF-8) and return the path."""
    path = Path(path)
    path.write_text(explorer_html(payload, title), encoding="utf-8")
    return path
