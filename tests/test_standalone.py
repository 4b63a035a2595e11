"""The standalone HTML explorer: one file, offline from file:// (no server), the same frontend sources,
and what it draws equals capture.attention_rows."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch

from conftest import SCREENSHOTS
from rope_viz import capture, data, models
from rope_viz.app import explorer, standalone

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
MODELS = (("APE", "scenes-ape"), ("RoPE-Mixed", "scenes-rope-mixed"))


def page_pixels(resolution: int) -> np.ndarray:
    """The Attention page's default image (the first sample scene). Shapes: -> (R, R, 3) uint8"""
    sample = sorted((models.ASSETS_DIR / "images").glob("scene_*.png"))[0]
    image = data.load_image(sample.read_bytes(), sample.name)
    return (data.resize_center_crop(image, resolution) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def captures_at(resolution: int) -> dict[str, capture.QK]:
    pixels = torch.from_numpy(page_pixels(resolution)).permute(2, 0, 1)[None]
    out = {}
    for label, name in MODELS:
        loaded = models.load_model(name)
        out[label] = capture.capture_qk(loaded, loaded.normalise(pixels))
    return out


STATE = {"view": "heads", "head": 1, "opacity": 0.6, "pinned": [0, 0], "key": "standalone", "panel_px": 320}


def fake_payload() -> bytes:
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(1, 2, 2, 17, 8, generator=g) for _ in range(2))
    qk = capture.QK(q=q, k=k, grid=(4, 4), num_prefix_tokens=1, scale=8 ** -0.5)
    return explorer.pack({"A": qk}, 1, np.zeros((32, 32, 3), np.uint8), 8, {**STATE, "payload_id": "x"})


def test_file_embeds_the_frontend_sources_verbatim_and_needs_no_network():
    page = standalone.explorer_html(fake_payload(), "a <test> & title")
    for name in standalone.SOURCES:
        assert (standalone.FRONTEND / name).read_text() in page, name  # the same files, not a copy
    assert not re.search(r"https?://", page), re.search(r".{40}https?://.{40}", page)
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#)""", page)  # nothing loaded from elsewhere
    assert "a &lt;test&gt; &amp; title" in page


def test_one_payload_per_layer_and_save_html(tmp_path):
    qks = captures_at(64)
    payloads = standalone.layer_payloads(qks, [0, 3], page_pixels(64), 8, STATE)
    assert list(payloads) == ["layer 0", "layer 3"]
    assert [explorer.unpack_header(p)["layer"] for p in payloads.values()] == [0, 3]
    path = standalone.save_html(tmp_path / "x.html", payloads, "t")
    text = path.read_text()
    assert text.count('id="rvx-data-') == 2 and len(text) > sum(map(len, payloads.values())) * 4 // 3
    with pytest.raises(ValueError):
        standalone.explorer_html(b"nope", "t")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium).")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def state_of(pg) -> dict:
    return pg.evaluate("""() => { const s = window.ropeExplorer && window.ropeExplorer.standalone;
        if (!s) return null; const rows = {};
        for (const [m, r] of Object.entries(s.rows)) rows[m] = Array.from(r);
        return {query: s.query, rows, repaints: s.repaints, layer: s.layer}; }""")


@pytest.mark.browser
@pytest.mark.parametrize("resolution", [64, 128])
def test_standalone_file_offline_hover_equals_attention_rows(browser, tmp_path, resolution):
    qks = captures_at(resolution)
    payloads = standalone.layer_payloads(qks, [1, 3], page_pixels(resolution), 8, STATE)
    path = standalone.save_html(tmp_path / f"explorer_{resolution}.html", payloads, "offline")
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, offline=True)
    pg = context.new_page()
    requests, errors = [], []
    pg.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "blob:", "data:")) else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(path.as_uri())
    pg.wait_for_function("() => window.ropeExplorer && window.ropeExplorer.standalone", timeout=60_000)
    pg.select_option("#rvx-pick", "1")  # the second layer in the file: layer 3
    pg.wait_for_function("() => window.ropeExplorer.standalone.layer === 3", timeout=30_000)
    canvas = pg.locator("canvas[data-panel]").first
    box = canvas.bounding_box()
    grid = resolution // 8
    for fx, fy in ((0.8, 0.3), (0.1, 0.9), (0.55, 0.55)):
        before = state_of(pg)["repaints"]
        pg.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
        pg.wait_for_function(f"() => window.ropeExplorer.standalone.repaints > {before}", timeout=30_000)
        shown = state_of(pg)
        x, y = shown["query"]["x"], shown["query"]["y"]
        assert (x, y) == (int(fx * grid), int(fy * grid))
        for label, qk in qks.items():
            exact = capture.attention_rows(qk, capture.patch_token(qk, x, y))[0, 3].numpy()  # (H, N)
            rows = np.array(shown["rows"][label]).reshape(exact.shape)
            assert np.abs(rows - exact).max() < 1e-4, (label, (x, y), np.abs(rows - exact).max())
    assert not requests and not errors, (requests, errors)
    pg.screenshot(path=str(SCREENSHOTS / f"standalone_{resolution}.png"), full_page=True)
    context.close()


@pytest.mark.browser
def test_a_file_with_some_heads_labels_them_by_the_models_numbers(browser, tmp_path):
    qks = captures_at(64)
    payloads = standalone.layer_payloads(qks, [2], page_pixels(64), 8, {**STATE, "view": "heads"}, heads=[1, 3])
    path = standalone.save_html(tmp_path / "heads.html", payloads, "two heads")
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    pg.goto(path.as_uri())
    pg.wait_for_function("() => window.ropeExplorer && window.ropeExplorer.standalone", timeout=60_000)
    assert pg.locator("canvas[data-panel]").evaluate_all("cs => cs.map(c => c.dataset.panel)") == ["head 1", "head 3"] * 2
    box = pg.locator("canvas[data-panel]").first.bounding_box()
    pg.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6)
    pg.wait_for_function("() => window.ropeExplorer.standalone.query.x === 2", timeout=30_000)
    shown = state_of(pg)
    for label, qk in qks.items():
        exact = capture.attention_rows(qk, capture.patch_token(qk, 2, 4))[0, 2, [1, 3]].numpy()  # (2, N)
        assert np.abs(np.array(shown["rows"][label]).reshape(exact.shape) - exact).max() < 1e-4
    pg.close()
