"""Resolution: accuracy and attention statistics as the input grows past the training resolution."""
import json
import time

import streamlit as st

from pages import shared
from rope_viz import models
from rope_viz.app import cached, figures, views
from rope_viz.measure import collapse, positions, sweep
from rope_viz.models import reported
from rope_viz.errors import RopeVizError

RESOLUTIONS = [16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 192, 224, 256, 288, 320, 384, 448, 512]
URL_KEYS = {"res_models": "list", "res_list": "list_int", "res_data": "str", "res_limit": "int",
            "res_methods": "list", "res_view": "str", "res_reported": "str", "res_att_n": "int", "res_band_k": "int"}

cached.use_app_navigation()  # before anything is drawn (see its docstring)

st.title("Resolution sweeps")
st.markdown(
    "The paper's headline: trained at one resolution, RoPE ViTs keep their accuracy at larger inputs far "
    "better than APE ViTs. Sweep models over resolutions on held-out scenes (or your own image folder) and "
    "see it, or not, for yourself. **zoom** shows the same scene at more pixels (the paper's setting); "
    "**canvas** keeps object size and widens the view (pure position extrapolation)."
)
shared.share_view(URL_KEYS)

available = cached.get_available_models()
spec_of = {s.name: s for s in available}
bundled = [s.name for s in available if s.source == "bundled"]
if not available:
    st.error("No models are available; see the Home page.")
    st.stop()

shared.restore_choice("res_models", list(spec_of))
shared.restore_choice("res_list", RESOLUTIONS)
c1, c2 = st.columns([3, 2])
chosen = c1.multiselect("models", list(spec_of), default=bundled or list(spec_of)[:1],
                        format_func=lambda n: spec_of[n].display, key="res_models")
resolutions = c2.multiselect("resolutions (px)", RESOLUTIONS,
                             default=[32, 48, 64, 96, 128, 192], key="res_list",
                             help="Sizes that are not a multiple of a model's patch size are rounded to the "
                                  "nearest one; the table's 'requested' column says so.")
c1, c2, c3 = st.columns(3)
data_kind = c1.selectbox("eval set", ["shapes:zoom", "shapes:canvas", "image folder"], key="res_data")
folder = c1.text_input("image folder (ImageFolder: one folder per class)", key="res_folder") \
    if data_kind == "image folder" else ""
limit = int(c2.number_input("images per cell (N)", 10, 100_000, 500, step=100, key="res_limit",
                            help="The first N held-out scenes (seeds from 10,000,000), or the first N images."))
methods = c3.multiselect("position methods (one curve each)", list(positions.METHODS), default=[positions.DEFAULT_METHOD],
                         format_func=positions.LABELS.get, key="res_methods",
                         help="How RoPE positions go beyond the training grid: native (as the model computes them), "
                              "extrapolate (integer positions, the paper's naver models), interpolate, "
                              "NTK-aware, YaRN-2D, log-N logit scale, DINOv3-style normalised coordinates (formulas "
                              "in rope_viz.positions). Every method sees the same images. APE tables are always "
                              "resampled bicubically: the paper's plain way for naver and APE-only models, timm's antialiased "
                              "way otherwise (the table's ape_resample); on APE-only models only a logit scale applies.")
band_k = 0
if any(m.startswith("drop_") for m in methods):  # band ablation: how many pairs to switch off
    band_k = int(c3.number_input("k pairs switched off (drop_low / drop_high)", 0, 512, 4, key="res_band_k",
                                 help="Rotation off for the k lowest or highest |w| pairs of every head (p-RoPE)."))
    methods = [f"{m}:{band_k}" if m.startswith("drop_") else m for m in methods]
dataset = folder.strip() if data_kind == "image folder" else data_kind
policy = sweep.RESIZE_POLICY["folder" if data_kind == "image folder" else "scenes"]
st.caption(f"Resize policy: {policy}. Batches of 128, inference mode, fused attention, "
           f"{'bf16 autocast' if cached.get_device() == 'cuda' else 'fp32'} on {models.device_description(cached.get_device())}.")

if not chosen or not resolutions or not methods:
    st.info("Choose at least one model, one resolution and one position method.")
    st.stop()
shared.port_notes([spec_of[name] for name in chosen])
if data_kind == "image folder" and not dataset:
    st.info("Enter the path of an image folder on the machine running the app.")
    st.stop()

resolutions = sorted(resolutions)
cells = cached.get_sweep_cells()  # finished cells, shared by sessions: a revisit is instant


def cached_rows() -> list[dict]:
    rows = []
    for name in classified:
        for method in methods:
            for r in resolutions:
                res = sweep.snap_resolution(r, spec_of[name].patch_size)
                row = cells.get(sweep.cell_key(name, res, dataset, limit, method))
                if row is not None:
                    rows.append({**row, "requested": r})
    return rows


def accuracy_section() -> None:
    """The accuracy sweep of the models with classes: run button, chart, table and downloads."""
    rows = cached_rows()
    n_cells = len(classified) * len(methods) * len(resolutions)
    missing = n_cells - len(rows)
    run = st.button(f"Run sweep ({missing} of {n_cells} cells to compute)" if missing
                    else "All cells computed", disabled=not missing, type="primary", key="res_run")
    if run:
        bar = st.progress(0.0, text="Starting…")
        started = time.perf_counter()

        def progress(done: int, total: int, row: dict) -> None:
            left = sweep.sweep_seconds_left(started, done, total)
            bar.progress(done / total, text=f"{done}/{total} cells · {row['model']} at {row['resolution']} px: "
                                            f"top-1 {row['top1']:.1f}% · about {left:.0f} s left")

        st.caption("Changing any control or pressing Stop cancels the sweep; finished cells are kept.")
        try:
            sweep.accuracy_sweep(classified, resolutions, dataset=dataset, limit=limit, device=cached.get_device(),
                                 methods=methods, progress=progress, cache=cells, load=cached.load_shared)
        except RopeVizError as err:
            st.error(str(err))
        bar.empty()
        rows = cached_rows()

    if not rows:
        st.info("Press **Run sweep** to measure. On 2 CPU cores the default sweep (5 models, 6 sizes, N = 500) "
                "takes a few minutes.")
        return

    train_res = {name: spec_of[name].train_res for name in classified}
    rows = sweep.train_resolution_change(rows, train_res)
    # One curve per (model, method): with several methods the method joins the curve's name.
    curve_rows = rows if len(methods) == 1 else [{**r, "model": f"{r['model']} · {r['method']}"} for r in rows]
    curve_train_res = train_res if len(methods) == 1 else {
        f"{n} · {m}": spec_of[n].train_res for n in classified for m in methods}
    hub_reported = [{"label": f"{n} (reported)", "resolution": r, "top1": v}
                    for n in classified for r, v in (reported.reported_for(n) or {}).items()]

    st.subheader("Top-1 against resolution")
    view = st.radio("show", ["top-1 (%)", "change from the training resolution (points)", "top-5 (%)"],
                    horizontal=True, key="res_view")
    value = {"top-1 (%)": "top1", "top-5 (%)": "top5"}.get(view, "delta_top1")
    st.plotly_chart(figures.fig_accuracy_vs_resolution(
        curve_rows, curve_train_res, value, reported=hub_reported if value == "top1" else None,
        title=f"{view} on {dataset}, N={limit}, {', '.join(methods)}"), key="res_chart")
    if missing and not run:
        st.warning(f"{missing} cells are not computed yet (a cancelled or new sweep): the chart shows the finished ones.")
    if hub_reported:
        st.caption(f"Dashed: published ImageNet-1k top-1 ({reported.SOURCE}), not measured here.")

    size = st.selectbox("published ImageNet-1k numbers (DeiT-III, 400 epochs) for", ["none", "small", "base", "large"],
                        key="res_reported", help="From the rope-vit README: top-1 at 224 and 384 px. Shown apart: "
                                                 "they are ImageNet, not these scenes, and are not measured here.")
    if size != "none":
        paper = reported.reported_rows((size,))
        fig = figures.fig_accuracy_vs_resolution([], {"ImageNet training": 224}, reported=paper,
                                                 title=f"Reported (not measured here): ViT-{size[0].upper()} on ImageNet-1k")
        st.plotly_chart(fig, key="res_reported_chart")

    st.dataframe(rows, hide_index=True, width="stretch", key="res_table")
    c1, c2 = st.columns(2)
    c1.download_button("Download CSV", sweep.rows_to_csv(rows), file_name="resolution_sweep.csv", mime="text/csv",
                       key="res_csv", on_click="ignore")
    c2.download_button("Download JSON", json.dumps(rows, indent=1), file_name="resolution_sweep.json",
                       mime="application/json", key="res_json", on_click="ignore")


headless = [spec_of[n] for n in chosen if not spec_of[n].has_classifier]
classified = [n for n in chosen if spec_of[n].has_classifier]
for spec in headless:
    st.info(models.classifier_note(spec, "its accuracy sweep") + " Its attention statistics are below.")
if classified:
    accuracy_section()

# ------------------------------------------------------------------ attention statistics
st.subheader("Attention distance and entropy against resolution")
n_images = int(st.number_input("images", 1, 64, 8, key="res_att_n",
                               help="Captures q and k for every layer; a few images are enough for the trend."))
att_key = (tuple(chosen), tuple(resolutions), dataset, n_images)
att_rows = cached.get_attention_results().get(att_key)
if st.button("Measure attention statistics", key="res_att_run", disabled=att_rows is not None):
    bar = st.progress(0.0, text="Capturing…")
    try:
        att_rows = sweep.attention_sweep(chosen, resolutions, dataset=dataset, limit=n_images,
                                         device=cached.get_device(), load=cached.load_shared,
                                         progress=lambda d, t, r: bar.progress(d / t, text=f"{d}/{t}: {r['model']} "
                                                                                           f"at {r['resolution']} px"))
        cached.get_attention_results()[att_key] = att_rows
    except RopeVizError as err:
        st.error(str(err))
    bar.empty()
if att_rows:
    c1, c2 = st.columns(2)
    c1.plotly_chart(figures.fig_stat_vs_resolution(att_rows, "distance", "mean attention distance (patches)",
                                                   "Mean attention distance"), key="res_att_distance")
    c2.plotly_chart(figures.fig_stat_vs_resolution(att_rows, "entropy", "entropy (nats)", "Attention entropy"),
                    key="res_att_entropy")
    st.caption("One line per model and layer, deeper layers darker; averaged over heads and images. A head that "
               "keeps a fixed distance in patches as the grid grows is local; one whose distance grows with the "
               "grid spreads over the whole image.")

# ------------------------------------------------------------------ the 2x canvas collapse
st.subheader("Why the bundled models fail on the 2x canvas")
st.markdown(
    "On a canvas twice the training size (128 px) every bundled model falls towards chance. Measured on 500 "
    "held-out scenes (`bench/canvas_collapse.py`), each change below removes one candidate cause. **RoPE models:** "
    "the CLS token is never rotated, so its attention logit to a patch, q_cls · R(p) k_p, depends on the patch's "
    "*absolute* position p. Training only ever showed positions 0..7; the canvas puts the training frame at "
    "patches 4..11 of 0..15. Shifting every RoPE position by -4 patches (which leaves patch-to-patch attention "
    "unchanged) takes RoPE-Axial from 20.0% to 80.2% and RoPE-Mixed from 18.8% to 50.4%; adding the log-N logit "
    "scale (the CLS query's attention spreads over 4x the tokens) then gives 92.2% and 72.4%. Either alone is "
    "not enough: the log-N scale without the shift gives 26.4% and 23.0%, and removing distractors or the whole "
    "surround changes the RoPE models by +1 to +8 points. **APE:** its table is resampled to the larger grid, "
    "so the canvas compresses positions; clutter and dilution matter most there (58.2% canvas, 73.4% without "
    "the outer distractors, 69.6% with the log-N scale)."
)
collapse_models = [n for n in chosen if spec_of[n].source == "bundled"]
if collapse_models and st.toggle(f"Measure it here (128 px canvas, the first {limit} held-out scenes per change)",
                                 key="res_collapse"):
    try:
        with st.spinner("Rendering the canvas variants and evaluating…"):
            collapse_rows = cached.get_canvas_collapse(tuple(collapse_models), cached.get_device(), 128, limit)
        st.plotly_chart(figures.fig_canvas_collapse(collapse_rows, collapse.CONDITIONS, 128), key="res_collapse_chart")
        st.download_button("Download CSV", views.to_csv(collapse_rows), file_name="canvas_collapse.csv",
                           mime="text/csv", key="res_collapse_csv", on_click="ignore")
    except RopeVizError as err:
        st.error(str(err))
