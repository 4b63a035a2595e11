"""Load: N real browser sessions at once (one headless Chromium, one context each) on one `streamlit run`.

Each session goes through Attention (then a new resolution), Attribution (odd sessions switch to Grad-CAM)
and Resolution (a 2-model x 2-size sweep, N = 10), starting on a different page so that captures,
attributions and sweeps run side by side on the one shared server. Every number a session reads off its
page (top-5 tables, attention maps, the attribution table and maps, the sweep CSV) is compared with a
serial run of the same library calls in this process.

Reports p50/p95 interaction latency (an action until the page shows its result) and the server's peak
memory: the RSS of the server process and its children, sampled from /proc every 0.1 s.
tests/test_load.py runs the same sessions (drive_sessions, serial_reference, compare) as a test.
Usage: python bench/load.py [--sessions 8]
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from rope_viz import attribution, data, models, sweep
from rope_viz.app import views

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SAMPLE = sorted((ROOT / "assets" / "images").glob("scene_*.png"))[0]  # the pages' default sample scene
PAIR = ("scenes-ape", "scenes-rope-mixed")  # the pages' default model A and model B
START_RES = 64  # the bundled models' training resolution: the pages' default
SWEEP_RES = (32, 48)  # the Resolution page's default sizes less the last four: keeps the test short
SWEEP_MODELS = 2  # the first two default models (bundled APE, RoPE-Axial)
SWEEP_N = 10
TIMEOUT = 240_000  # ms, for any one wait on the page


def attention_res(session: int) -> int:
    """Each session moves Attention to one of four sizes, so different captures run at once."""
    return 72 + 8 * (session % 4)


def gradcam(session: int) -> bool:
    return session % 2 == 1


# ---------------------------------------------------------------- the server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` on a free loopback port; returns when it answers its health check."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if server_up(url):
            return proc, url
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("streamlit did not start within 60 s")


def server_up(url: str) -> bool:
    try:
        return urllib.request.urlopen(url + "/_stcore/health", timeout=5).status == 200
    except OSError:
        return False


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])  # after the command name: state, ppid
            children.setdefault(parent, []).append(int(entry))
    total, todo, page = 0, [pid], os.sysconf("SC_PAGE_SIZE")
    while todo:
        p = todo.pop()
        try:
            total += int(open(f"/proc/{p}/statm").read().split()[1]) * page
        except OSError:
            continue
        todo.extend(children.get(p, []))
    return total


class PeakMemory:
    """Samples tree_rss(pid) every `every` seconds in a thread; .peak in bytes."""

    def __init__(self, pid: int, every: float = 0.1):
        self.pid, self.every, self.peak, self._stop = pid, every, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------- reading the page

async def settle(page) -> None:
    """Wait until Streamlit's run indicator is gone, twice, so a rerun that is just starting is not missed."""
    for _ in range(2):
        await page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                                     timeout=TIMEOUT)
        await page.wait_for_timeout(250)


async def assert_no_error(page, where: str) -> None:
    errors = page.locator("[data-testid='stException'], [data-testid='stAlertContentError']")
    if await errors.count():
        raise AssertionError(f"{where}: {await errors.first.inner_text()}")


async def heatmaps(page, chart: int) -> list[np.ndarray]:
    """Every heatmap's z of one Plotly chart, decoded from Plotly's typed-array JSON (or plain lists)."""
    traces = await page.evaluate(
        f"() => document.querySelectorAll('.js-plotly-plot')[{chart}].data.filter(t => t.type === 'heatmap')"
        ".map(t => t.z.bdata ? {dtype: t.z.dtype, bdata: t.z.bdata, shape: String(t.z.shape)} : {list: t.z})")
    out = []
    for t in traces:
        if "list" in t:
            out.append(np.asarray(t["list"], dtype=np.float64))
        else:
            shape = tuple(int(s) for s in t["shape"].split(","))
            out.append(np.frombuffer(base64.b64decode(t["bdata"]), dtype=np.dtype(t["dtype"])).reshape(shape))
    return out


async def table_cells(page, index: int, columns: int, kind: str = "stDataFrame") -> list[list[str]]:
    """The cells of the index-th st.dataframe (or st.table: kind "stTable") as rows of `columns` strings.

    A dataframe fills its accessible table as it draws; under load a row can be read before its last
    columns are there, so the read is repeated (up to 10 s) until every row has all its columns.
    """
    frame = page.locator(f"[data-testid='{kind}']").nth(index)
    for _ in range(20):
        out = []
        for row in await frame.locator("tr").all():
            cells = [c.strip() for c in await row.locator("td").all_inner_texts()]
            if cells:
                out.append(cells[-columns:])
        if out and all(len(r) == columns for r in out):
            break
        await page.wait_for_timeout(500)
    return out


# ---------------------------------------------------------------- one session

class Timer:
    def __init__(self):
        self.samples: list[tuple[str, float]] = []

    async def run(self, label: str, coro):
        start = time.perf_counter()
        result = await coro
        self.samples.append((label, time.perf_counter() - start))
        return result


async def open_page(page, url: str, charts: int) -> None:
    await page.goto(url)
    await page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot').length >= {charts}",
                                 timeout=TIMEOUT)
    await settle(page)


async def attention(page, url: str, session: int, timer: Timer) -> dict:
    # The maps as server-drawn charts (att_engine in the link): the browser-side explorer draws on a canvas.
    await timer.run("open Attention", open_page(page, url + "/attention?att_engine=server", 4))
    res = attention_res(session)
    grid = res // 8

    async def new_resolution():
        box = page.get_by_label("resolution (px)", exact=True)
        await box.fill(str(res))
        await box.press("Enter")
        await page.wait_for_function(
            "g => [0, 1].every(i => { const p = document.querySelectorAll('.js-plotly-plot')[i];"
            " const t = p && p.data && p.data.find(t => t.type === 'heatmap');"
            " return t && (t.z.shape ? String(t.z.shape).replace(/\\s/g, '') === `${g},${g}` : t.z.length === g); })",
            arg=grid, timeout=TIMEOUT)
        await settle(page)

    await timer.run("Attention: new resolution", new_resolution())
    await assert_no_error(page, f"session {session} Attention")
    query = (int(await page.get_by_label("query x (patch column)", exact=True).input_value()),
             int(await page.get_by_label("query y (patch row)", exact=True).input_value()))
    return {"resolution": res, "query": query,
            "top5": [await table_cells(page, i, 3) for i in range(2)],
            "maps": [(await heatmaps(page, i))[0] for i in range(2)]}


async def attribution_page(page, url: str, session: int, timer: Timer) -> dict:
    await timer.run("open Attribution", open_page(page, url + "/attribution", 1))
    method = "gradcam" if gradcam(session) else "ig"
    if method == "gradcam":
        async def switch():
            await page.locator("[data-testid='stSelectbox']").filter(has_text="method").first.click()
            await page.get_by_role("option", name=attribution.LABELS["gradcam"]).click()
            await page.wait_for_function(
                "t => { const p = document.querySelectorAll('.js-plotly-plot')[0];"
                " return !!p && p.innerText.includes(t); }",
                arg=f"{attribution.LABELS['gradcam']} at {START_RES} px", timeout=TIMEOUT)
            await settle(page)
        await timer.run("Attribution: Grad-CAM", switch())
    await assert_no_error(page, f"session {session} Attribution")
    # model, target, predicted, probability; IG adds its steps, delta, logit gap and |delta| / gap %
    columns = 8 if method == "ig" else 4
    return {"method": method, "table": await table_cells(page, 0, columns, "stTable"), "maps": await heatmaps(page, 0)}


async def resolution_page(page, url: str, session: int, timer: Timer, downloads: Path) -> dict:
    async def open_resolution():
        await page.goto(url + "/resolution")
        await page.get_by_label("images per cell (N)", exact=True).wait_for(timeout=TIMEOUT)
        await settle(page)
    await timer.run("open Resolution", open_resolution())

    async def keep_first(label: str, count: int, total: int):
        """Backspace in a multiselect removes its last choice (one rerun each)."""
        await page.locator("[data-testid='stMultiSelect']").filter(has_text=label).locator("input").click()
        for _ in range(total - count):
            await page.keyboard.press("Backspace")
            await settle(page)
        await page.keyboard.press("Escape")

    async def choose():
        await keep_first("resolutions (px)", len(SWEEP_RES), 6)
        await keep_first("models", SWEEP_MODELS, 5)
        box = page.get_by_label("images per cell (N)", exact=True)
        await box.fill(str(SWEEP_N))
        await box.press("Enter")
        await page.get_by_role("button", name=f"{SWEEP_MODELS * len(SWEEP_RES)} cells").or_(
            page.get_by_role("button", name="All cells computed")).wait_for(timeout=TIMEOUT)
        await settle(page)
    await timer.run("Resolution: choose a small sweep", choose())

    async def run_sweep():
        from playwright.async_api import TimeoutError as PlaywrightTimeout
        run = page.get_by_role("button", name="Run sweep")
        try:  # another session may finish every cell meanwhile: then the button goes, maybe between two calls
            if await run.count() and await run.is_enabled(timeout=5_000):
                await run.click(timeout=5_000)
        except PlaywrightTimeout:
            pass  # gone: the cells are done, and the CSV below says so
        await page.get_by_role("button", name="Download CSV").wait_for(timeout=TIMEOUT)
        await settle(page)
    await timer.run("Resolution: sweep", run_sweep())
    await assert_no_error(page, f"session {session} Resolution")
    path = downloads / f"sweep_{session}.csv"
    # One click, as a person gives it: the button serves its file without a rerun (on_click="ignore").
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Download CSV").first.click()
    await (await info.value).save_as(path)
    return {"csv": list(csv.DictReader(io.StringIO(path.read_text())))}


async def one_session(browser, url: str, session: int, downloads: Path) -> tuple[dict, Timer]:
    context = await browser.new_context(viewport={"width": 2400, "height": 1000}, accept_downloads=True)  # wide: the dataframe renders every column
    page = await context.new_page()
    timer, out = Timer(), {}
    steps = [("attention", lambda: attention(page, url, session, timer)),
             ("attribution", lambda: attribution_page(page, url, session, timer)),
             ("resolution", lambda: resolution_page(page, url, session, timer, downloads))]
    start = session % len(steps)
    try:
        for name, step in steps[start:] + steps[:start]:  # sessions start on different pages
            out[name] = await step()
    except Exception as err:
        await page.screenshot(path=str(downloads / f"session_{session}_failed.png"), full_page=True)
        shown = await page.locator("[data-testid='stMain']").inner_text()
        raise AssertionError(f"session {session}: {err}\npage: {shown[:1500]}") from err
    finally:
        await context.close()
    return out, timer


async def _drive(url: str, sessions: int, downloads: Path):
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            return await asyncio.gather(*(one_session(browser, url, i, downloads) for i in range(sessions)))
        finally:
            await browser.close()


def drive_sessions(url: str, sessions: int, downloads: Path) -> list[tuple[dict, Timer]]:
    """Run `sessions` browser sessions at once against the server at url; their readings and timers."""
    downloads.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_drive(url, sessions, downloads))


# ---------------------------------------------------------------- the serial run and the comparison

def serial_reference(sessions: int) -> dict:
    """The same numbers from the library, one call after another in this process."""
    loaded = {name: models.load_model(name) for name in PAIR}
    ref = {"attention": {}, "attribution": {}}
    for res in sorted({attention_res(i) for i in range(sessions)}):
        pixels = data.input_image("sample", str(SAMPLE), res)
        ref["attention"][res] = {name: views.capture_image(m, pixels) for name, m in loaded.items()}
    pixels = data.input_image("sample", str(SAMPLE), START_RES)
    for method in ("ig", "gradcam"):
        ref["attribution"][method] = {name: attribution.explain(m, pixels, method, None, None, 64 if method == "gradcam"
                                                                else -1) for name, m in loaded.items()}
    bundled = [s.name for s in models.available_models() if s.source == "bundled"]
    ref["sweep"] = sweep.accuracy_sweep(bundled[:SWEEP_MODELS], SWEEP_RES, dataset="shapes:zoom", limit=SWEEP_N)
    return ref


def compare(session: int, got: dict, ref: dict) -> None:
    """Raise AssertionError when a session's page shows a number the serial run does not give."""
    att = got["attention"]
    captures = ref["attention"][att["resolution"]]
    for (name, qk), table, shown in zip(captures.items(), att["top5"], att["maps"]):
        spec = models.get_spec(name)
        want = [[str(r["rank"]), r["class"], f"{r['probability %']:g}"] for r in views.top_k(qk.logits[0], spec.class_names)]
        assert table == want, (session, name, table, want)
        panel = next(iter(views.attention_panels(qk, "query", qk.num_layers - 1, 0, att["query"]).values()))
        np.testing.assert_allclose(shown, panel, rtol=1e-5, atol=1e-7, err_msg=f"session {session} {name}")
    attr = got["attribution"]
    wants = ref["attribution"][attr["method"]]
    assert len(attr["table"]) == len(wants) == len(attr["maps"]), (session, attr["table"])
    for row, shown, (name, want) in zip(attr["table"], attr["maps"], wants.items()):
        classes = models.get_spec(name).class_names
        assert row[1:3] == [classes[want["target"]], classes[want["predicted"]]], (session, name, row, want)
        assert abs(float(row[3]) - round(100 * want["probability"], 2)) < 1e-9, (session, name, row, want)  # 4 decimals shown
        if want["delta"] is not None:  # IG with automatic steps: the steps it chose, its delta and the logit gap
            assert len(row) == 8 and int(row[4]) == want["steps"], (session, name, row, want)
            for cell, exact in ((row[5], want["delta"]), (row[6], want["logit_gap"])):  # as the table prints them
                assert abs(float(cell) - exact) <= 1e-4 * max(1.0, abs(exact)), (session, name, row, want)
        else:
            assert len(row) == 4, (session, name, row)
        np.testing.assert_allclose(shown, abs(want["map"]), rtol=1e-4, atol=1e-6, err_msg=f"session {session} {name}")
    columns = ("model", "resolution", "requested", "mode", "position", "top1", "top5", "n", "correct1", "correct5")
    rows = [{c: str(r[c]) for c in columns} for r in got["resolution"]["csv"]]
    assert rows == [{c: str(r[c]) for c in columns} for r in ref["sweep"]], session


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(np.ceil(q / 100 * len(ordered))) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=8)
    args = parser.parse_args()
    print("reference (serial, in this process)…", flush=True)
    ref = serial_reference(args.sessions)
    proc, url = start_server()
    try:
        with PeakMemory(proc.pid) as memory:
            idle = tree_rss(proc.pid)
            started = time.perf_counter()
            results = drive_sessions(url, args.sessions, ROOT / "bench" / "downloads")
            wall = time.perf_counter() - started
        for i, (got, _) in enumerate(results):
            compare(i, got, ref)
        assert server_up(url), "the server went down"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    samples = [(label, s) for _, timer in results for label, s in timer.samples]
    print(f"{args.sessions} sessions at once on {os.cpu_count()} CPU cores: every number equals the serial run, "
          f"no error box, server up; {wall:.1f} s wall")
    seconds = [s for _, s in samples]
    print(f"interaction latency over {len(seconds)} interactions: p50 {percentile(seconds, 50):.2f} s, "
          f"p95 {percentile(seconds, 95):.2f} s, max {max(seconds):.2f} s")
    for label in dict.fromkeys(label for label, _ in samples):
        values = [s for l, s in samples if l == label]
        print(f"  {label:28} n={len(values)}  p50 {percentile(values, 50):6.2f} s  p95 {percentile(values, 95):6.2f} s")
    print(f"server memory (RSS of its process tree): {idle / 2**20:.0f} MiB at start, peak {memory.peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
