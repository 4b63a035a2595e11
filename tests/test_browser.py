"""A real browser (Debian chromium through Playwright) drives the running app."""
from __future__ import annotations

import json
import shutil

import pytest
import timm
import torch
from safetensors.torch import save_file

from conftest import SCREENSHOTS
from rope_viz.app import navigation

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page(streamlit_url):
    from playwright.sync_api import sync_playwright

    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium).")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield pg
        browser.close()


def wait_for_app(pg, timeout=90_000):
    pg.wait_for_selector("[data-testid='stApp']", timeout=timeout)
    # Streamlit shows a running indicator while the script executes; wait until it is gone.
    pg.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)


def wait_for_plots(pg, count: int, name: str, timeout=120_000):
    """Wait until the page shows `count` Plotly charts; on failure keep a screenshot and say what is there."""
    try:
        pg.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot').length >= {count}", timeout=timeout)
    except Exception:
        pg.screenshot(path=str(SCREENSHOTS / f"{name}_failed.png"), full_page=True)
        raise AssertionError("no plots: " + pg.locator("[data-testid='stMain']").inner_text()[:1500])
    wait_for_app(pg)


def open_page(pg, url: str, plots: int, name: str):
    """Go to a page, wait for its run to finish and its charts to draw, and check it shows no error."""
    pg.goto(url)
    wait_for_app(pg)
    wait_for_plots(pg, plots, name)
    assert_no_error(pg)


def assert_no_error(pg):
    errors = pg.locator("[data-testid='stException'], [data-testid='stAlertContentError']")
    assert errors.count() == 0, errors.first.inner_text()


PAGES = navigation.url_paths()  # every page of the registry, so a new page is walked too


def assert_no_modal(pg):
    """Streamlit's "Page not found" (and any other) dialog is absent."""
    dialogs = pg.locator("[role='dialog']")
    assert dialogs.count() == 0, dialogs.first.inner_text()


def test_every_page_url_opens_without_a_modal(page, streamlit_url):
    for path in PAGES:
        page.goto(streamlit_url + path)
        wait_for_app(page)
        page.wait_for_selector("[data-testid='stMainBlockContainer'] h1", timeout=90_000)
        wait_for_app(page)
        assert_no_modal(page)
        assert_no_error(page)
        heading = page.locator("[data-testid='stMainBlockContainer'] h1").first.inner_text()
        assert heading and "not found" not in heading.lower(), (path, heading)


def test_home_and_navigation_titles(page, streamlit_url):
    page.goto(streamlit_url + "/home")
    wait_for_app(page)
    page.wait_for_selector("[data-testid='stDataFrame']", timeout=90_000)  # the models table: the run finished
    wait_for_app(page)
    nav = page.locator("[data-testid='stSidebarNav']").inner_text()
    lines = [line.strip() for line in nav.splitlines() if line.strip()]
    # The titles from app.py's st.Page, not Streamlit's raw file-name listing ("app", "home", ...).
    assert "Home" in lines and "Frequencies" in lines, lines
    assert "app" not in lines and "frequencies" not in lines, lines
    assert_no_error(page)
    page.screenshot(path=str(SCREENSHOTS / "home.png"), full_page=True)


def test_frequencies_renders_plots_and_click_moves_query(page, streamlit_url):
    open_page(page, streamlit_url + "/frequencies", 4, "frequencies")
    query_x = page.get_by_label("query x (column)")
    before = query_x.input_value()
    # Click a patch near the top-left of the first kernel panel (the transparent scatter layer).
    chart = page.locator(".js-plotly-plot").nth(2)
    chart.scroll_into_view_if_needed()
    box = chart.locator(".nsewdrag").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.1)
    page.wait_for_function(
        f"() => document.querySelector('input[aria-label=\"query x (column)\"]').value !== '{before}'",
        timeout=30_000)
    wait_for_app(page)
    assert int(query_x.input_value()) < int(before)
    assert_no_error(page)
    page.screenshot(path=str(SCREENSHOTS / "frequencies.png"), full_page=True)


def heatmap_z(page, chart_index: int) -> str:
    """The first heatmap's values of a Plotly chart, as JSON (to see that a map changed)."""
    return page.evaluate(
        f"() => JSON.stringify(document.querySelectorAll('.js-plotly-plot')[{chart_index}]"
        ".data.find(t => t.type === 'heatmap').z)")


def test_attention_click_moves_query_and_changes_maps(page, streamlit_url):
    open_page(page, streamlit_url + "/attention?att_engine=server", 4, "attention")  # the server path
    query_x = page.get_by_label("query x (patch column)")
    before_x, before_maps = query_x.input_value(), heatmap_z(page, 0)
    chart = page.locator(".js-plotly-plot").first
    chart.scroll_into_view_if_needed()
    box = chart.locator(".nsewdrag").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.08, box["y"] + box["height"] * 0.08)  # a top-left patch
    page.wait_for_function(
        f"() => document.querySelector('input[aria-label=\"query x (patch column)\"]').value !== '{before_x}'",
        timeout=60_000)
    wait_for_app(page)
    page.wait_for_function(f"() => JSON.stringify(document.querySelectorAll('.js-plotly-plot')[0]"
                           f".data.find(t => t.type === 'heatmap').z) !== {before_maps!r}", timeout=60_000)
    assert int(query_x.input_value()) < int(before_x)
    assert_no_error(page)
    page.screenshot(path=str(SCREENSHOTS / "attention.png"), full_page=True)


def test_resolution_small_sweep_and_csv_download(page, streamlit_url, tmp_path):
    page.goto(streamlit_url + "/resolution")
    wait_for_app(page)
    page.get_by_label("images per cell (N)", exact=True).fill("16")
    page.get_by_label("images per cell (N)", exact=True).press("Enter")
    wait_for_app(page)
    page.get_by_role("button", name="Run sweep").click()
    page.wait_for_selector("[data-testid='stDownloadButton']", timeout=300_000)
    wait_for_app(page)
    assert_no_error(page)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    path = tmp_path / "sweep.csv"
    download.value.save_as(path)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("model,resolution,requested,mode,position,ape_resample,top1,top5,n")
    assert len(lines) == 1 + 5 * 6 and all(line.split(",")[8] == "16" for line in lines[1:])
    # Which APE resampling each row used: the bundled APE models as their cards were measured (timm's).
    assert {line.split(",")[5] for line in lines[1:] if "ape" in line.split(",")[0]} == {"timm"}
    page.screenshot(path=str(SCREENSHOTS / "resolution.png"), full_page=True)


def test_attribution_page_renders_both_models(page, streamlit_url):
    open_page(page, streamlit_url + "/attribution", 1, "attribution")
    titles = page.locator(".js-plotly-plot").first.inner_text()
    assert "APE" in titles and "RoPE-Mixed" in titles  # the bundled defaults, side by side
    page.screenshot(path=str(SCREENSHOTS / "attribution.png"), full_page=True)


def explorer_state(pg) -> dict:
    return pg.evaluate("""() => { const s = window.ropeExplorer && window.ropeExplorer.att_explorer;
        if (!s) return null;
        const rows = {}, panels = {};
        for (const [m, r] of Object.entries(s.rows)) rows[m] = Array.from(r);
        for (const [m, p] of Object.entries(s.panels)) {
            panels[m] = {}; for (const [l, v] of Object.entries(p)) panels[m][l] = Array.from(v); }
        return {query: s.query, tokens: s.tokens, rows, panels, zmax: s.zmax, repaints: s.repaints}; }""")


def hover_first_panel(pg, fx: float, fy: float) -> tuple[dict, dict]:
    """Move the mouse to (fx, fy) of the explorer's first panel (fractions of its width and height) and wait
    for the repaint: the explorer's state before and after."""
    before = explorer_state(pg)
    canvas = pg.locator("canvas[data-panel]").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    pg.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
    pg.wait_for_function(f"() => window.ropeExplorer.att_explorer.repaints > {before['repaints']}")
    return before, explorer_state(pg)


def server_rows(model_name: str, resolution: int, query_xy: tuple[int, int], layer: int):
    """What the server computes for the Attention page's default image (the first sample scene)."""
    import torch

    from rope_viz import capture, data, models

    sample = sorted((models.ASSETS_DIR / "images").glob("scene_*.png"))[0]
    image = data.load_image(sample.read_bytes(), sample.name)
    pixels = (data.resize_center_crop(image, resolution) * 255).round().to(torch.uint8)  # the page's image
    loaded = models.load_model(model_name)
    qk = capture.capture_qk(loaded, loaded.normalise(pixels[None]))
    return capture.attention_rows(qk, capture.patch_token(qk, *query_xy))[0, layer]  # (H, N)


@pytest.mark.parametrize("resolution", [64, 128])
def test_explorer_hover_follows_mouse_and_equals_server_rows(page, streamlit_url, resolution):
    import numpy as np

    page.goto(streamlit_url + f"/attention?att_res={resolution}&att_view=heads")
    wait_for_app(page)
    page.wait_for_function("() => window.ropeExplorer && window.ropeExplorer.att_explorer", timeout=120_000)
    wait_for_app(page)
    before, after = hover_first_panel(page, 0.8, 0.3)
    grid = resolution // 8
    x, y = after["query"]["x"], after["query"]["y"]
    assert (x, y) == (int(0.8 * grid), int(0.3 * grid)) != (before["query"]["x"], before["query"]["y"])
    assert after["panels"] != before["panels"]  # the map moved with the mouse
    for label, name in (("APE", "scenes-ape"), ("RoPE-Mixed", "scenes-rope-mixed")):
        shown = next(k for k in after["rows"] if k.startswith(label + " "))
        exact = server_rows(name, resolution, (x, y), layer=3).numpy()  # (H, N); default layer: the last
        rows = np.array(after["rows"][shown]).reshape(exact.shape)
        assert np.abs(rows - exact).max() < 1e-4, (shown, np.abs(rows - exact).max())
        drawn = np.array(after["panels"][shown]["head 1"])  # what head 1's panel painted: patch columns of the row
        assert np.abs(drawn - exact[1, 1:]).max() < 1e-4
    page.screenshot(path=str(SCREENSHOTS / f"explorer_{resolution}.png"), full_page=True)


def test_deep_link_restores_view_in_fresh_context(page, streamlit_url):
    """Pin a query and change the view, copy the link, open it in a new browser context: the same view."""
    page.goto(streamlit_url + "/attention?att_view=mean&att_layer=1")
    wait_for_app(page)
    page.wait_for_function("() => window.ropeExplorer && window.ropeExplorer.att_explorer", timeout=120_000)
    canvas = page.locator("canvas[data-panel]").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.9)  # pin patch (0, 7)
    page.wait_for_function("() => new URL(location.href).searchParams.get('att_qy') === '7'", timeout=60_000)
    wait_for_app(page)
    page.get_by_test_id("copy-link").click()
    link = page.evaluate("() => window.ropeCopiedLink")
    assert "att_qx=0" in link and "att_view=mean" in link and "att_model_a=scenes-ape" in link
    fresh = page.context.browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        other = fresh.new_page()
        other.goto(link)
        wait_for_app(other)
        other.wait_for_function("() => window.ropeExplorer && window.ropeExplorer.att_explorer", timeout=120_000)
        state = explorer_state(other)
        assert state["query"] == {"x": 0, "y": 7} and list(next(iter(state["panels"].values()))) == ["mean over heads"]
        wait_for_app(other)
        # The number inputs are drawn after the explorer (same fragment); wait until they show the restored value.
        other.wait_for_function("""() => { const i = Array.from(document.querySelectorAll('input'))
            .find(e => e.ariaLabel === 'query y (patch row)'); return i && i.value === '7'; }""", timeout=30_000)
        assert_no_modal(other)
        other.screenshot(path=str(SCREENSHOTS / "deep_link.png"), full_page=True)
    finally:
        fresh.close()


LESSON_STEPS = [("patch x", 0), ("move both patches by dx", 1), ("pairs added", 2), ("mixed direction (degrees)", 3),
                ("zoom", 4)]


def test_every_lesson_step_renders_and_responds(page, streamlit_url):
    open_page(page, streamlit_url + "/lesson", 5, "lesson")
    page.screenshot(path=str(SCREENSHOTS / "lesson_top.png"))
    for label, chart in LESSON_STEPS:
        figure = f"JSON.stringify(document.querySelectorAll('.js-plotly-plot')[{chart}].data)"
        before = page.evaluate(f"() => {figure}")
        if label == "zoom":  # step 5: the other eval set
            page.get_by_text("zoom", exact=True).click()
        else:
            thumb = page.get_by_role("slider", name=label)
            thumb.scroll_into_view_if_needed()
            thumb.focus()
            thumb.press("ArrowRight")
        page.wait_for_function(f"() => {figure} !== {json.dumps(before)}", timeout=60_000)
        wait_for_app(page)
        assert_no_error(page)
        # A picture of the step for people (a page clip: Plotly may still be settling the element).
        box = page.locator(".js-plotly-plot").nth(chart).bounding_box()
        if box:
            page.screenshot(path=str(SCREENSHOTS / f"lesson_step{chart + 1}.png"), clip=box)
    assert "lesson_mode=zoom" in page.url and "lesson_x=4" in page.url  # the steps' controls are in the link

def test_a_dinov3_checkpoint_added_on_home_shows_on_frequencies(page, streamlit_url, tmp_path):
    """A non-naver family end to end: add a local DINOv3 checkpoint on Home, draw its frequencies."""
    torch.manual_seed(0)
    module = timm.create_model("vit_tiny_patch16_dinov3_qkvb", pretrained=False, num_classes=0)
    path = tmp_path / "tiny_dinov3.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))

    page.goto(streamlit_url)
    wait_for_app(page)
    page.get_by_text("Add a local checkpoint").click()
    page.get_by_label("Checkpoint path on this machine").fill(str(path))
    arch = page.get_by_role("combobox", name="Architecture (timm name; type another)")
    arch.click()
    arch.fill("vit_tiny_patch16_dinov3_qkvb")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Add").click()
    page.get_by_text("Added local:tiny_dinov3.safetensors (DINOv3)").wait_for(timeout=90_000)
    assert_no_error(page)

    open_page(page, streamlit_url + "/frequencies", 4, "frequencies_dinov3_default")
    source = page.get_by_role("combobox", name="Frequencies from")
    source.click()
    source.fill("tiny_dinov3")
    page.keyboard.press("Enter")
    page.get_by_text("CLS + 4 registers").wait_for(timeout=90_000)  # the family caption of this model
    wait_for_plots(page, 4, "frequencies_dinov3")
    assert_no_error(page)
    assert "DINOv3 (this model)" in page.locator("[data-testid='stMain']").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "frequencies_dinov3.png"), full_page=True)


def test_features_page_click_moves_query(page, streamlit_url):
    open_page(page, streamlit_url + "/features", 2, "features")
    nav = page.locator("[data-testid='stSidebarNav']").inner_text()
    assert "Features" in nav
    query_u = page.get_by_label("query x (fraction of width)")
    before_u, before_sim = query_u.input_value(), heatmap_z(page, 0)
    chart = page.locator(".js-plotly-plot").first
    chart.scroll_into_view_if_needed()
    box = chart.locator(".nsewdrag").first.bounding_box()  # the first PCA panel
    page.mouse.click(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.1)
    page.wait_for_function(
        f"() => document.querySelector('input[aria-label=\"query x (fraction of width)\"]').value !== '{before_u}'",
        timeout=60_000)
    wait_for_app(page)
    page.wait_for_function(f"() => JSON.stringify(document.querySelectorAll('.js-plotly-plot')[0]"
                           f".data.find(t => t.type === 'heatmap').z) !== {before_sim!r}", timeout=60_000)
    assert float(query_u.input_value()) < 0.25
    assert_no_error(page)
    page.screenshot(path=str(SCREENSHOTS / "features.png"), full_page=True)


def test_anatomy_draws_the_logit_bars(page, streamlit_url):
    """The Anatomy page on the bundled RoPE-Mixed model: the pair bars, their counterfactuals, no error."""
    open_page(page, streamlit_url + "/anatomy", 6, "anatomy")
    bars = page.evaluate("""() => { const chart = document.querySelectorAll('.js-plotly-plot')[0];
        return chart.data.map(t => [t.type, t.name, t.y.length]); }""")
    assert bars[0][:2] == ["bar", "the model's term"] and bars[0][2] == 12, bars  # 24 channels: 12 pairs
    assert {"same position (offset 0)", "content removed (content angle 0)"} <= {b[1] for b in bars}
    assert page.locator(".js-plotly-plot").first.locator("g.point").count() >= 12  # the bars are drawn
    text = page.locator("[data-testid='stMain']").inner_text()
    assert "the model's logit" in text and "Is this RoPE right?" in text
    page.screenshot(path=str(SCREENSHOTS / "anatomy.png"), full_page=True)


def test_attention_head_grid_renders_and_a_click_picks_the_head(page, streamlit_url):
    """Every head at once: one L x H grid per model; a click on a small map shows that layer and head."""
    open_page(page, streamlit_url + "/attention?att_engine=server&att_model_b=(none)&att_heads_all=true", 4,
              "attention_grid")
    grid = page.locator(".js-plotly-plot").nth(1)  # the map, then the grid
    picks = grid.evaluate("el => Array.from(el._fullData.find(t => t.name === 'heads').customdata,"
                          " row => [row[0], row[1]])")  # [layer, head] of each small map
    assert sorted(map(tuple, picks)) == [(la, h) for la in range(4) for h in range(4)]  # the bundled models: 4 x 4
    title = "() => document.querySelectorAll('.js-plotly-plot')[0].layout.title.text"
    assert "layer 3" in page.evaluate(title) and "att_layer=3" in page.url  # the last layer by default
    grid.scroll_into_view_if_needed()
    box = grid.locator(".nsewdrag").first.bounding_box()  # the grid's plot area: 4 x 4 maps
    page.mouse.click(box["x"] + box["width"] * 0.375, box["y"] + box["height"] * 0.125)  # layer 0, head 1
    page.wait_for_function("() => { const p = new URL(location.href).searchParams;"
                           " return p.get('att_layer') === '0' && p.get('att_head') === '1'; }", timeout=60_000)
    wait_for_app(page)
    page.wait_for_function(f"() => ({title})().includes('layer 0')", timeout=60_000)  # the map above follows
    assert page.evaluate("() => document.querySelectorAll('.js-plotly-plot')[0].layout.annotations[0].text") == "head 1"
    assert_no_error(page)
    page.screenshot(path=str(SCREENSHOTS / "attention_head_grid.png"), full_page=True)


def test_a_hugging_face_tower_added_on_home_shows_exact_windowed_attention(page, streamlit_url, tmp_path):
    """A transformers VLM directory added on Home: the explorer's rows for it, in a windowed layer, equal the
    server's capture (keys outside the query's window get no weight)."""
    import numpy as np

    from rope_viz import capture, models
    from rope_viz.app import views
    from test_towers import CASES

    case = next(c for key in ("qwen2_5_vl", "sam3") for c in CASES if c.key == key)  # a tower with windows
    directory = tmp_path / "tiny_tower"
    directory.mkdir()
    case.save_vlm(directory)
    page.goto(streamlit_url)
    wait_for_app(page)
    page.get_by_text("Add a Hugging Face vision tower").click()
    page.get_by_role("textbox", name="Model directory or hub id").fill(str(directory))
    page.get_by_role("button", name="Add tower").click()
    page.get_by_text("Added local:tiny_tower").wait_for(timeout=90_000)
    assert_no_error(page)

    spec = models.register_local(directory, name="local:tiny_tower")  # the same tower in this process
    resolution = spec.train_res
    sample = sorted((models.ASSETS_DIR / "images").glob("scene_*.png"))[0]
    from rope_viz import data

    pixels = (data.resize_center_crop(data.load_image(sample.read_bytes(), sample.name), resolution) * 255).round()
    loaded = models.load_model(spec.name)
    qk = capture.capture_qk(loaded, loaded.normalise(pixels.to(torch.uint8)[None]))
    layer = views.windowed_layers(qk)[0]
    page.goto(streamlit_url + f"/attention?att_model_a=local:tiny_tower&att_model_b=(none)&att_layer={layer}"
              f"&att_view=heads&att_res={resolution}")
    wait_for_app(page)
    page.wait_for_function("() => window.ropeExplorer && window.ropeExplorer.att_explorer", timeout=120_000)
    wait_for_app(page)
    assert_no_error(page)
    assert "attend within windows" in page.locator("[data-testid='stMain']").inner_text()
    before, after = hover_first_panel(page, 0.8, 0.3)
    x, y = after["query"]["x"], after["query"]["y"]
    exact = capture.attention_rows(qk, capture.patch_token(qk, x, y))[0, layer].numpy()  # (H, N)
    rows = np.array(next(iter(after["rows"].values()))).reshape(exact.shape)
    assert np.abs(rows - exact).max() < 1e-4
    assert (exact == 0).any() and ((rows == 0) == (exact == 0)).all()  # the same keys outside the window
    page.screenshot(path=str(SCREENSHOTS / "attention_tower.png"), full_page=True)
