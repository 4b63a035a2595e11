"""A real browser (Debian chromium through Playwright) drives the running app."""
from __future__ import annotations

import shutil

import pytest

from conftest import SCREENSHOTS

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
    open_page(page, streamlit_url + "/attention", 4, "attention")
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
    assert lines[0].startswith("model,resolution,requested,mode,position,top1,top5,n")
    assert len(lines) == 1 + 5 * 6 and all(line.split(",")[7] == "16" for line in lines[1:])
    page.screenshot(path=str(SCREENSHOTS / "resolution.png"), full_page=True)


def test_attribution_page_renders_both_models(page, streamlit_url):
    open_page(page, streamlit_url + "/attribution", 1, "attribution")
    titles = page.locator(".js-plotly-plot").first.inner_text()
    assert "APE" in titles and "RoPE-Mixed" in titles  # the bundled defaults, side by side
    page.screenshot(path=str(SCREENSHOTS / "attribution.png"), full_page=True)
