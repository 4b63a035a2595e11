"""The notebook API (rope_viz.notebook): no Streamlit, the app's figures with the model's numbers, and the
attention widget running the app's own explorer.js (driven in chromium through a stand-in for anywidget)."""
from __future__ import annotations

import base64
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from test_standalone import browser  # noqa: F401  (the chromium fixture)
from rope_viz import capture, models, notebook as rv, rope
from rope_viz.app import explorer, standalone, views


def test_the_notebook_module_imports_no_streamlit():
    code = "import sys, rope_viz.notebook; print(sorted(m for m in sys.modules if m.split('.')[0] == 'streamlit'))"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stdout + run.stderr[-2000:]


def test_figures_show_the_models_numbers():
    spec = models.get_spec("scenes-rope-mixed")
    freqs = rope.model_freqs(rv.load(spec).module).numpy()  # (L, H, D/2, 2)
    fig = rv.kernel("scenes-rope-mixed", layer=1, head=2, grid=10, query=(3, 4))
    maps = [np.array(t.z, dtype=float) for t in fig.data if t.type == "heatmap"]  # theory reference, then the model
    assert len(maps) == 2 and np.allclose(maps[1], views.kernel(freqs[1, 2], 10, 10, (3, 4)), atol=1e-6)
    assert rv.frequencies(spec, layer=1, head=2).data
    assert len(rv.feature_maps("scenes-ape", (32, 64)).data) >= 4
    with pytest.raises(rv.NotebookError, match="no RoPE"):
        rv.frequencies("scenes-ape")


def test_widget_carries_the_frontend_files_and_saves_html(tmp_path):
    widget = rv.attention(["scenes-ape", "scenes-rope-mixed"], resolution=64, layers=[0, 3])
    assert json.dumps(standalone.source("explorer.js")) in widget._esm  # the same file, as a JS string
    assert widget._css == standalone.source("explorer.css")
    assert list(widget.payloads) == ["layer 0", "layer 3"] and widget.payload == widget.payloads["layer 0"]
    widget.show_layer("layer 3")
    assert explorer.unpack_header(widget.payload)["layer"] == 3
    text = widget.save_html(tmp_path / "w.html").read_text()
    assert text.count('id="rvx-data-') == 2
    assert rv.save_html(tmp_path / "one.html", "scenes-rope-mixed", 64).stat().st_size > 50_000


# A page that loads the widget's _esm as anywidget would (an ES module whose default export has render),
# with a stand-in model whose payload is the widget's bytes (a DataView, as ipywidgets sends binary traits).
HARNESS = """<!DOCTYPE html><html><head><meta charset="utf-8"><style>%s</style></head><body><div id="el"></div>
<script type="module">
const esm = %s, b64 = %s;
const raw = atob(b64), bytes = new Uint8Array(raw.length);
for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
window.saved = [];
const model = { get: (k) => (k === "payload" ? new DataView(bytes.buffer) : null), on() {},
  set(k, v) { window.saved.push([k, v]); }, save_changes() {} };
const mod = await import(URL.createObjectURL(new Blob([esm], { type: "text/javascript" })));
await mod.default.render({ model, el: document.getElementById("el") });
</script></body></html>"""


@pytest.mark.browser
def test_widget_esm_hovers_and_equals_attention_rows(browser, tmp_path):  # noqa: F811
    widget = rv.attention(["scenes-ape", "scenes-rope-mixed"], resolution=64, view="heads")
    page = tmp_path / "widget.html"
    page.write_text(HARNESS % (widget._css, json.dumps(widget._esm), json.dumps(base64.b64encode(widget.payload).decode())))
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(page.as_uri())
    pg.wait_for_function("() => window.ropeExplorer && window.ropeExplorer.notebook", timeout=60_000)
    box = pg.locator("canvas[data-panel]").first.bounding_box()
    before = pg.evaluate("() => window.ropeExplorer.notebook.repaints")
    pg.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.7)
    pg.wait_for_function(f"() => window.ropeExplorer.notebook.repaints > {before}", timeout=30_000)
    shown = pg.evaluate("""() => { const s = window.ropeExplorer.notebook, rows = {};
        for (const [m, r] of Object.entries(s.rows)) rows[m] = Array.from(r); return {query: s.query, rows}; }""")
    x, y = shown["query"]["x"], shown["query"]["y"]
    assert (x, y) == (1, 5)
    pixels = rv.image(64)
    for name in ("scenes-ape", "scenes-rope-mixed"):
        loaded = rv.load(name)
        qk = views.capture_image(loaded, pixels)
        exact = capture.attention_rows(qk, capture.patch_token(qk, x, y))[0, 3].numpy()
        rows = np.array(shown["rows"][loaded.spec.display]).reshape(exact.shape)
        assert np.abs(rows - exact).max() < 1e-4
    pg.mouse.click(box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.1)
    assert pg.evaluate("() => window.saved") == [["pinned", [7, 0]]] and not errors, errors
    pg.close()


def test_widget_data_equals_the_pages_payload():
    """The same model, image and layer give the widget the page's numbers: header and bytes alike, but for
    the view state the page sends (its query, head, panel size and cache id)."""
    from rope_viz.app import cached

    names = ["scenes-ape", "scenes-rope-mixed"]
    widget = rv.attention(names, resolution=64, layer=2, scene=10_000_007)
    pixels = rv.image(64, scene=10_000_007)
    labels = [models.get_spec(n).display for n in names]
    page = cached.get_explorer_payload(names, labels, "cpu", "test", pixels, 2, 8, {"view": "query", "head": 0})
    mine, theirs = explorer.unpack_header(widget.payload), explorer.unpack_header(page)
    state_keys = {"view", "head", "opacity", "pinned", "key", "panel_px", "payload_id"}
    assert {k: v for k, v in mine.items() if k not in state_keys} == {k: v for k, v in theirs.items() if k not in state_keys}
    size = lambda p: 8 + int.from_bytes(p[4:8], "little")  # noqa: E731  (header length)
    assert widget.payload[size(widget.payload):] == page[size(page):]  # image, q and k: the same bytes
