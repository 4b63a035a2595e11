"""Lesson: RoPE in 2D, step by step. Each step is one figure computed by rope_viz.lesson and a few sentences."""
import streamlit as st

from pages import shared
from rope_viz.app import cached, figures, lesson

cached.use_app_navigation()  # before anything is drawn (see its docstring)

URL_KEYS = {"lesson_pair": "int", "lesson_x": "int", "lesson_y": "int", "lesson_shift_x": "int",
            "lesson_shift_y": "int", "lesson_pairs": "int", "lesson_kind": "str", "lesson_angle": "int",
            "lesson_qx": "int", "lesson_mode": "str", "lesson_res": "int"}
G = lesson.GRID
AXIAL = lesson.lesson_freqs("axial")

st.title("RoPE in 2D, step by step")
st.markdown(
    "A Vision Transformer cuts an image into patches and compares every patch's **query** q with every "
    "patch's **key** k: the attention logit is q · k. Nothing in q · k says *where* the patches are. Rotary "
    f"position embedding (RoPE) fixes that by rotating q and k. Five steps, on a {G} x {G} patch grid "
    f"(a 224 px image in 16 px patches) and a head of {lesson.HEAD_DIM} features."
)
shared.share_view(URL_KEYS)

# ------------------------------------------------------------------ 1
st.header("1. One feature pair turns as the patch moves")
st.markdown(
    "RoPE groups the features of q and k into pairs and treats each pair as an arrow in a plane. A patch at "
    "position **p = (x, y)** turns pair j by the angle **w_j · p**, where w_j = (w_x, w_y) is that pair's "
    "frequency vector in radians per patch. Move the patch and watch the arrow turn."
)
c1, c2, c3 = st.columns(3)
pair = c1.slider("pair j", 0, len(AXIAL) - 1, 0, key="lesson_pair",
                 help="Axial RoPE: pairs 0-7 turn with x, pairs 8-15 with y; higher j turns more slowly.")
x = c2.slider("patch x", 0, G - 1, 3, key="lesson_x")
y = c3.slider("patch y", 0, G - 1, 2, key="lesson_y")
start = (1.0, 0.0)
turn = lesson.pair_turn(AXIAL[pair], start, x, y)
st.plotly_chart(lesson.fig_pair_turn(turn, start, x, y), key="lesson_fig_turn")
st.caption(f"w_{pair} = ({AXIAL[pair][0]:.3f}, {AXIAL[pair][1]:.3f}) rad/patch, so at ({x}, {y}) the pair turns by "
           f"{AXIAL[pair][0]:.3f}·{x} + {AXIAL[pair][1]:.3f}·{y} = {turn['angle']:.3f} rad. The length never changes.")

# ------------------------------------------------------------------ 2
st.header("2. q · k depends only on the offset")
st.markdown(
    "Rotate q by w·p_q and k by w·p_k: their dot product only sees the *difference* of the angles, "
    "w·(p_q − p_k). So moving both patches by the same step leaves the logit unchanged. An absolute "
    "embedding *added* to q and k (as APE does) has no such property."
)
c1, c2 = st.columns(2)
shift_x = c1.slider("move both patches by dx", -4, 4, 2, key="lesson_shift_x")
shift_y = c2.slider("move both patches by dy", -4, 4, 1, key="lesson_shift_y")
query_xy, key_xy = (5, 5), (8, 6)
logits = lesson.offset_logits(AXIAL, query_xy, key_xy, (shift_x, shift_y))
st.plotly_chart(lesson.fig_offset(logits, query_xy, key_xy, (shift_x, shift_y)), key="lesson_fig_offset")
st.caption(f"RoPE: {logits['rope_before']:.4f} before, {logits['rope_after']:.4f} after the move (same offset "
           f"{key_xy[0] - query_xy[0]}, {key_xy[1] - query_xy[1]}). Added embedding: {logits['added_before']:.4f} "
           f"before, {logits['added_after']:.4f} after.")

# ------------------------------------------------------------------ 3
st.header("3. Many frequencies add up to a similarity kernel")
st.markdown(
    "Each pair contributes one wave cos(w_j · Δp) over the offset Δp. Fast pairs ripple, slow pairs "
    "change over the whole image; their average is the **similarity kernel**: the logit a query gives each "
    "patch from position alone. Add pairs one by one and watch a peak form at the query."
)
c1, c2 = st.columns(2)
pairs = c1.slider("pairs added", 1, len(AXIAL), 4, key="lesson_pairs")
kind = c2.radio("frequencies", lesson.KINDS, horizontal=True, key="lesson_kind",
                format_func={"axial": "RoPE-Axial", "mixed": "RoPE-Mixed (30°)"}.get)
freqs = lesson.lesson_freqs(kind, 30.0)
center = (G // 2, G // 2)
st.plotly_chart(figures.fig_heatmaps(lesson.partial_kernels(freqs, pairs, center), f"{pairs} of {len(freqs)} pairs",
                                     "similarity", zmin=-1, zmax=1, query_xy=center, value_name="similarity"),
                key="lesson_fig_kernel")
st.caption("Left: the newest pair's wave alone. Right: the mean of all pairs so far. "
           "Blue is where position alone pushes attention down, red where it pulls it up.")

# ------------------------------------------------------------------ 4
st.header("4. Axial against mixed directions: the cross artefact")
st.markdown(
    "Axial RoPE gives every pair a frequency along x *or* along y. Its kernel is then an x-wave plus a "
    "y-wave, which stays high along the query's whole row and column: a **cross**. RoPE-Mixed turns the "
    "frequencies to other directions (learned in training), so similarity falls off in every direction."
)
c1, c2 = st.columns(2)
angle = c1.slider("mixed direction (degrees)", 0, 90, 30, key="lesson_angle",
                  help="0° is axial again; anything in between mixes x and y in every pair.")
qx = c2.slider("query x", 0, G - 1, 4, key="lesson_qx")
panels = {"RoPE-Axial": AXIAL, f"RoPE-Mixed ({angle}°)": lesson.lesson_freqs("mixed", angle)}
kernels = {k: lesson.kernel(f, (qx, G // 2)) for k, f in panels.items()}
st.plotly_chart(lesson.fig_axial_vs_mixed(panels, kernels, (qx, G // 2)), key="lesson_fig_cross")
cross = {k: lesson.cross_strength(v, (qx, G // 2)) for k, v in kernels.items()}
st.caption("How much higher the kernel is along the query's row and column than elsewhere (3+ patches away): "
           + ", ".join(f"{k}: {v:+.3f}" for k, v in cross.items()) + ".")

# ------------------------------------------------------------------ 5
st.header("5. Beyond the training grid")
st.markdown(
    "A model trained on one grid meets positions it never saw when the image grows. An APE table must be "
    "stretched to the new grid; RoPE just keeps rotating (w · p for larger p), so every angle it meets is "
    "one of its waves further along. Whether that keeps the answers right is measured, not assumed."
)
bundled = [s for s in cached.get_available_models() if s.source == "bundled"]
c1, c2 = st.columns(2)
mode = c1.radio("eval set", ["canvas", "zoom"], horizontal=True, key="lesson_mode",
                help="canvas: same object size, wider view (pure position extrapolation). zoom: the same scene at more pixels.")
rows = lesson.measured_top1(bundled, mode)
sizes = sorted({r["resolution"] for r in rows})
if not sizes:
    st.info("The bundled models' cards have no measured numbers yet (python -m rope_viz eval --model NAME --write).")
else:
    shared.restore_choice("lesson_res", sizes)
    resolution = c2.select_slider("input size (px)", sizes, value=sizes[len(sizes) // 2 + 1 if len(sizes) > 2 else 0],
                                  key="lesson_res")
    st.plotly_chart(lesson.fig_measured(rows, resolution, mode), key="lesson_fig_beyond")
    summary = lesson.beyond_summary(rows, resolution)
    best, worst, first = summary[0], summary[-1], rows[0]
    grid, train_grid = resolution // first["patch"], first["train_res"] // first["patch"]
    st.markdown(
        f"The bundled models were trained at {first['train_res']} px ({train_grid} x {train_grid} patches). "
        f"At **{resolution} px** ({grid} x {grid} patches, {mode} mode) the best is **{best['model']}** with "
        f"{best['top1']:.1f}% top-1 ({best['change']:+.1f} points from its training size); the lowest is "
        f"**{worst['model']}** with {worst['top1']:.1f}% ({worst['change']:+.1f} points). "
        f"Measured on {first['n'] or 'the'} held-out scenes per cell, read from the model cards in assets/models."
    )
    st.dataframe(summary, hide_index=True, key="lesson_table")
    st.caption(
        "These curves extrapolate RoPE positions (the paper's setting), while timm stretches APE's table to the "
        "new grid, which is an interpolation. That is why APE can hold better here, in zoom mode above all. "
        "To compare like with like, add 'interpolate (positions x t/g)' to the position methods on the "
        "Resolution page; the README gives the measured numbers."
    )
st.page_link("pages/resolution.py", label="Measure it yourself on the Resolution page", icon=":material/zoom_out_map:",
             query_params={"res_data": f"shapes:{mode}"})
