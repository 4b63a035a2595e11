"""Benchmark: how fast the attention maps follow the user, in headless Chromium, in one run.

  click-to-repaint, server path: the Attention page (?att_engine=server), a click on a patch until both
    redrawn charts show the query marker on that patch and the next frame is produced (timed in the page
    from the click event, so Playwright's polling is not in it);
  click-to-repaint, floor: a bare Streamlit page with the same two charts, maps precomputed
    (bench/interaction_app.py ?mode=floor): Streamlit's round trip plus Plotly's redraw;
  hover-to-repaint, browser explorer: the mouse moves to a new patch until the canvas is redrawn and the
    next frame produced (measured in the page from the event's timestamp), bundled models and ViT-B/16
    RoPE-Mixed (random weights) at 448 px, whose drawn rows are also checked against capture.attention_rows.
Targets (not asserted): hover median <= 50 ms (bundled, 64-256 px), <= 100 ms (ViT-B/16, 448 px);
server click <= 1.3x the floor at 64 px and <= 2x at 256 px.
Usage: python bench/interaction.py [--clicks 21] [--rounds 3] [--hovers 30] [--sizes 64 128 256]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import timm
import torch
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from rope_viz import capture, data, models
from rope_viz.app import explorer

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
IDLE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
WHAT_IS_THERE = """([x, y]) => { const e = document.elementFromPoint(x, y), s = window.ropeExplorer.att_explorer;
    return {element: e ? `${e.tagName}.${e.className}` : null, query: s.query, repaints: s.repaints,
            scrollY: window.scrollY}; }"""


def serve(script: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"streamlit run {script} did not start")


# In the page: from a click's mousedown event until both charts show the marker on window.clickTarget,
# then one more frame (the redraw on screen). Fragment reruns show no status widget, so its absence
# says nothing; what the user waits for is both maps redrawn.
CLICK_PROBE = """() => {
  const markers = () => Array.from(document.querySelectorAll('.js-plotly-plot')).slice(0, 2).map(g =>
      JSON.stringify((g.data || []).filter(t => t.marker && t.marker.symbol === 'x-thin').map(t => [t.x, t.y])));
  window.clickDone = null;
  if (window.clickProbe) return;
  window.clickProbe = true;
  document.addEventListener('mousedown', event => {
    const start = event.timeStamp, want = JSON.stringify([[[window.clickTarget[0]], [window.clickTarget[1]]]]);
    const tick = () => {
      const now = markers();
      if (now.length === 2 && now.every(m => m === want)) {
        requestAnimationFrame(() => { window.clickDone = performance.now() - start; });
      } else if (performance.now() - start < 60000) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }, true);
}"""


def click_times(page, url: str, clicks: int, res: int) -> tuple[list[float], int]:
    """Seconds from a click on a patch of the first chart until both charts are redrawn with it as the query,
    and the chart's width in px (the floor's charts must be as wide as the page's: the same pixels to draw)."""
    page.goto(url)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=300_000)
    page.wait_for_function(IDLE, timeout=300_000)
    chart = page.locator(".js-plotly-plot").first
    chart.scroll_into_view_if_needed()
    grid, times = res // 8, []
    for i in range(clicks + 1):  # the first click warms the caches up and is not counted
        target = chart.locator(".nsewdrag").first
        target.wait_for(state="visible")  # the chart is drawn anew after each click
        box = target.bounding_box()
        x, y = (3 * i + 1) % grid, (5 * i + 2) % grid
        page.evaluate(CLICK_PROBE)
        page.evaluate(f"() => {{ window.clickTarget = [{x}, {y}]; }}")
        page.mouse.click(box["x"] + (x + 0.5) / grid * box["width"], box["y"] + (y + 0.5) / grid * box["height"])
        page.wait_for_function("() => window.clickDone !== null", timeout=120_000)
        if i:
            times.append(page.evaluate("() => window.clickDone") / 1000)
    return times, round(chart.bounding_box()["width"])


def hover_times(page, url: str, hovers: int) -> tuple[list[float], list[float], dict]:
    """In-page ms (input event -> frame after the redraw) and Playwright round-trip ms per patch change."""
    page.goto(url)
    page.wait_for_function("() => window.ropeExplorer && window.ropeExplorer.att_explorer", timeout=300_000)
    page.wait_for_function(IDLE, timeout=300_000)
    canvas = page.locator("canvas[data-panel]").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.evaluate("() => { window.ropeExplorer.att_explorer.latencies.length = 0; }")
    grid = page.evaluate("() => window.ropeExplorer.att_explorer.panels") and \
        int(page.evaluate("() => Object.values(Object.values(window.ropeExplorer.att_explorer.panels)[0])[0].length")
            ** 0.5)
    walls = []
    for i in range(hovers):  # a new patch every time (the same patch is not redrawn)
        n = page.evaluate("() => window.ropeExplorer.att_explorer.repaints")
        x, y = (3 * i + 1) % grid, (7 * i + 2) % grid
        mx, my = box["x"] + (x + 0.5) / grid * box["width"], box["y"] + (y + 0.5) / grid * box["height"]
        start = time.perf_counter()
        page.mouse.move(mx, my)
        try:
            page.wait_for_function(f"() => window.ropeExplorer.att_explorer.repaints > {n}", timeout=10_000,
                                   polling="raf")
        except PlaywrightTimeout:  # seen now and then after many page loads, cause not found: say what was there
            print(f"  no redraw 10 s after moving to patch ({x}, {y}): {page.evaluate(WHAT_IS_THERE, [mx, my])}; "
                  f"canvas then {box}, now {canvas.bounding_box()}; this move is left out", flush=True)
            box = canvas.bounding_box()
            continue
        walls.append(1000 * (time.perf_counter() - start))
    page.wait_for_timeout(200)
    state = page.evaluate("""() => { const s = window.ropeExplorer.att_explorer;
        const rows = {}; for (const [m, r] of Object.entries(s.rows)) rows[m] = Array.from(r);
        return {latencies: s.latencies.slice(), query: s.query, rows, tokens: s.tokens}; }""")
    return state["latencies"], walls, state


def vitb_error(state: dict, res: int) -> float:
    """Max |browser row - capture.attention_rows| for the last hovered query on the bench's ViT-B/16."""
    torch.manual_seed(0)
    module = timm.create_model("vit_base_patch16_rope_mixed_224", pretrained=False, img_size=res).eval()
    image, _ = data.render_scene(data.EVAL_SEEDS.start, res)
    pixels = (data.resize_center_crop(image, res) * 255).round().to(torch.uint8)
    qk = capture.capture_qk(module, data.normalise(pixels[None], models.IMAGENET_MEAN, models.IMAGENET_STD))
    (label, rows), = state["rows"].items()
    exact = capture.attention_rows(qk, state["tokens"][label])[0, -1].numpy()  # (H, N), last layer
    fp16 = explorer.fp16_error(qk, qk.num_layers - 1)
    return float(np.abs(np.array(rows).reshape(exact.shape) - exact).max()), fp16, exact.shape


def bundled_fp16(res: int) -> dict[str, float]:
    """What sending fp16 instead of fp32 would change in the bundled models' last-layer attention at `res`."""
    sample = sorted((models.ASSETS_DIR / "images").glob("scene_*.png"))[0]
    image = data.load_image(sample.read_bytes(), sample.name)
    pixels = (data.resize_center_crop(image, res) * 255).round().to(torch.uint8)
    out = {}
    for name in ("scenes-ape", "scenes-rope-mixed"):
        loaded = models.load_model(name)
        qk = capture.capture_qk(loaded, loaded.normalise(pixels[None]))
        out[name] = explorer.fp16_error(qk, qk.num_layers - 1)
    return out


def med(values) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clicks", type=int, default=21, help="per page and size, split over the rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hovers", type=int, default=30)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--vitb-res", type=int, default=448)
    args = parser.parse_args()
    print(f"CPU cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.2f} (other work on the machine slows "
          "every figure alike; the ratios are measured side by side)")
    app, app_url = serve("app.py")
    bare, bare_url = serve("bench/interaction_app.py")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            print(f"\nclick-to-repaint (s, median of {args.clicks // args.rounds * args.rounds} clicks in {args.rounds} "
                  "rounds, page and floor taking turns)")
            print(f"{'size':>6} {'Attention page':>15} {'floor':>8} {'ratio':>7} {'chart width (px)':>17}")
            for res in args.sizes:
                server, floor = [], []
                for _ in range(args.rounds):  # page and floor take turns, so a slow spell of the machine hits both
                    times, width = click_times(page, f"{app_url}/attention?att_engine=server&att_res={res}",
                                               args.clicks // args.rounds, res)
                    server += times
                    times, floor_width = click_times(page, f"{bare_url}/?mode=floor&res={res}",
                                                     args.clicks // args.rounds, res)
                    floor += times
                print(f"{res:>6} {med(server):>15.3f} {med(floor):>8.3f} {med(server) / med(floor):>6.2f}x "
                      f"{f'{width} / {floor_width}':>17}")
            print("\nhover-to-repaint in the browser explorer (ms, median of", args.hovers, "patch changes)")
            print(f"{'case':>34} {'event->frame':>13} {'p90':>7} {'playwright round trip':>22}")
            for res in args.sizes:
                lat, walls, _ = hover_times(page, f"{app_url}/attention?att_res={res}", args.hovers)
                print(f"{f'bundled APE + RoPE-Mixed, {res} px':>34} {med(lat):>13.1f} "
                      f"{np.percentile(lat, 90):>7.1f} {med(walls):>22.1f}")
            lat, walls, state = hover_times(page, f"{bare_url}/?mode=vitb&res={args.vitb_res}", args.hovers)
            print(f"{f'ViT-B/16 random, {args.vitb_res} px':>34} {med(lat):>13.1f} {np.percentile(lat, 90):>7.1f} "
                  f"{med(walls):>22.1f}")
            browser.close()
        error, fp16, shape = vitb_error(state, args.vitb_res)
        print(f"\nViT-B/16 at {args.vitb_res} px, rows (H, N) = {shape}: max |browser - capture.attention_rows| = "
              f"{error:.2e} (fp32 sent); sending fp16 instead would change attention by up to {fp16:.2e}")
        for res in args.sizes:
            errors = ", ".join(f"{k} {v:.1e}" for k, v in bundled_fp16(res).items())
            print(f"fp16 instead of fp32 at {res} px, last layer, max change in attention: {errors}")
    finally:
        app.terminate()
        bare.terminate()


if __name__ == "__main__":
    main()
