"""Frequencies: the frequency vectors, phase maps, similarity kernels and spectra of 2D RoPE."""
import streamlit as st

from pages import shared
from rope_viz.app import cached, figures, method_figures, views
from rope_viz.measure import positions
from rope_viz.errors import RopeVizError

cached.use_app_navigation()  # before anything is drawn (see its docstring)

THEORY = "Theory: RoPE-Axial vs RoPE-Mixed"
KERNEL_KEYS = {"freq_kernel_grid": "int", "freq_qx": "int", "freq_qy": "int"}
URL_KEYS = {"freq_source": "str", "freq_head_dim": "int", "freq_heads": "int", "freq_theta_axial": "float",
            "freq_theta_mixed": "float", "freq_seed": "int", "freq_layer": "int", "freq_head": "int",
            "freq_log": "bool", "freq_pair": "int", "freq_phase_grid": "int", "freq_methods": "list",
            "freq_model_grid": "int", "freq_method_grid": "int", "freq_method_source": "str", **KERNEL_KEYS}

st.title("Frequencies")
st.markdown(
    "Each RoPE head owns D/2 frequency vectors **w_j = (w_x, w_y)** in radians per patch. A patch at "
    "position **p = (x, y)** rotates feature pair j of its query and key by the angle **w_j · p**; the "
    "attention logit between two patches then depends only on their offset. Everything below is a "
    "function of these vectors."
)
shared.share_view(URL_KEYS)

# ------------------------------------------------------------------ source
rope_models = [s for s in cached.get_available_models() if s.pos != "ape"]
# Default: the bundled RoPE-Mixed model (learned frequencies); Theory when there is none.
default = next((i + 1 for i, s in enumerate(rope_models) if s.source == "bundled" and s.pos == "rope_mixed"), 0)
shared.restore_choice("freq_source", [THEORY] + [s.name for s in rope_models])
choice = st.selectbox(
    "Frequencies from", [THEORY] + [s.name for s in rope_models], index=default,
    format_func=lambda n: n if n == THEORY else next(s.display for s in rope_models if s.name == n),
    help="Theory builds the frequencies from formulas; a model shows the ones it uses (learned, for RoPE-Mixed). "
         "APE-only models have no rotary frequencies, so they are not listed here.",
    key="freq_source",
)

if choice == THEORY:
    c1, c2, c3, c4, c5 = st.columns(5)
    head_dim = c1.number_input("head_dim (D)", value=64, step=4, key="freq_head_dim",
                               help="Features per head; 2D RoPE needs a multiple of 4.")
    num_heads = c2.number_input("heads", min_value=1, max_value=16, value=6, key="freq_heads")
    theta_axial = c3.number_input("axial theta", value=100.0, step=10.0, key="freq_theta_axial",
                                  help="f_i = 1/theta^(4i/D); naver RoPE-Axial uses 100.")
    theta_mixed = c4.number_input("mixed init theta", value=10.0, step=1.0, key="freq_theta_mixed",
                                  help="Magnitudes of the RoPE-Mixed initialisation; naver uses 10.")
    seed = c5.number_input("mixed seed", min_value=0, value=5, key="freq_seed",
                           help="Seeds the random direction of each mixed head.")
    try:
        pair_sets = {
            "RoPE-Axial (theory)": cached.get_theory_freqs("axial", int(head_dim), float(theta_axial), int(num_heads), 0),
            "RoPE-Mixed (initialisation)": cached.get_theory_freqs("mixed", int(head_dim), float(theta_mixed),
                                                                   int(num_heads), int(seed)),
        }
    except RopeVizError as err:
        st.error(str(err))
        st.stop()
    train_grid, patch_px, learned = 14, 16, None
else:
    spec = next(s for s in rope_models if s.name == choice)
    facts = views.family_facts(spec.family)
    train_grid, patch_px = spec.train_res // spec.patch_size, spec.patch_size
    freq_grid = train_grid
    if facts["grid_dependent"]:  # normalised positions: rad/patch depends on the grid
        shared.restore_range("freq_model_grid", 1, 128)
        freq_grid = int(st.number_input(
            "patch grid for the frequencies (patches per side)", min_value=1, max_value=128, value=train_grid,
            key="freq_model_grid", help=f"{facts['label']} normalises positions to the grid, so its vectors in "
                                        f"rad/patch depend on it; {train_grid} is the training grid."))
    try:
        freqs = cached.get_model_freqs(spec.name, freq_grid, freq_grid)
    except RopeVizError as err:
        st.error(str(err))
        st.stop()
    st.caption(f"**{spec.family_label}**: {facts['about']}. Prefix tokens (never rotated): {spec.prefix_label}. "
               + (f"Vectors for a {freq_grid} x {freq_grid} grid." if facts["grid_dependent"] else ""))
    pair_sets = views.axial_vs_mixed(spec.family, freqs, label=spec.family_label)
    learned = freqs if facts["learned"] else None

labels = list(pair_sets)
L, H = next(iter(pair_sets.values())).shape[:2]
c1, c2 = st.columns(2)
layer = c1.slider("layer", 0, L - 1, 0, key="freq_layer") if L > 1 else 0
head = c2.slider("head", 0, H - 1, 0, key="freq_head") if H > 1 else 0
heads = {label: f[layer, head] for label, f in pair_sets.items()}  # (D/2, 2) each

# ------------------------------------------------------------------ vectors
st.header("1. Frequency vectors")
log_mag = st.toggle("log magnitude (polar view)", key="freq_log")
st.plotly_chart(figures.fig_freq_vectors(heads, log_magnitude=log_mag,
                                         title=f"Frequency vectors, layer {layer}, head {head}"), key="freq_vectors")
st.caption(
    "Axial puts every vector on an axis: half of the pairs only ever see x, the other half only y. "
    "Mixed turns them into a rotated cross, a different direction per head, and a trained model "
    "moves them freely. Longer vectors turn faster: they resolve fine offsets but repeat sooner."
)

# ------------------------------------------------------------------ phase maps
st.header("2. Phase maps")
c1, c2 = st.columns(2)
pair = c1.slider("pair j", 0, heads[labels[0]].shape[0] - 1, 0, key="freq_pair")
grid = c2.slider("grid size (patches per side)", 2, 64, train_grid, key="freq_phase_grid",
                 help=f"{train_grid} is the training grid ({train_grid * patch_px} px at {patch_px} px patches).")
phases = {label: cached.get_phase_map(f, pair, grid, grid) for label, f in heads.items()}
st.plotly_chart(figures.fig_heatmaps(phases, f"cos(w_{pair} · p) over a {grid} x {grid} grid", "cos(angle)",
                                     zmin=-1, zmax=1, value_name="cos"), key="freq_phase")
st.caption(
    "Each map is one pair's rotation as a wave over the image. Axial waves are vertical or horizontal "
    "stripes; mixed waves run diagonally. Low j turns about 1 rad per patch, high j barely moves."
)

# ------------------------------------------------------------------ kernel


@st.fragment
def kernel_panel():
    st.header("3. Similarity kernel around a query patch")
    k_grid = st.slider("grid size (patches per side)", 4, 64, max(train_grid, 16), key="freq_kernel_grid",
                       help=f"The model trained on {train_grid} x {train_grid}; larger grids extrapolate.")
    event = st.session_state.get("freq_kernel_chart")
    points = event.get("selection", {}).get("points", []) if event else []
    if points:  # a click on the chart picks the query patch
        st.session_state["freq_qx"] = int(round(points[-1]["x"]))
        st.session_state["freq_qy"] = int(round(points[-1]["y"]))
    for key in ("freq_qx", "freq_qy"):
        st.session_state[key] = min(int(st.session_state.get(key, k_grid // 2)), k_grid - 1)
    c1, c2 = st.columns(2)
    qx = c1.number_input("query x (column)", 0, k_grid - 1, key="freq_qx")
    qy = c2.number_input("query y (row)", 0, k_grid - 1, key="freq_qy")
    shared.write_url()
    kernels = {label: cached.get_kernel(f, k_grid, k_grid, int(qx), int(qy)) for label, f in heads.items()}
    st.plotly_chart(
        figures.fig_heatmaps(kernels, f"mean_j cos(w_j · (p − p_query)), layer {layer}, head {head}",
                             "similarity", zmin=-1, zmax=1, query_xy=(int(qx), int(qy)), clickable=True,
                             value_name="similarity"),
        key="freq_kernel_chart", on_select="rerun", selection_mode="points")
    st.caption(
        "Click a patch to move the query (×). This is the logit a query gives each patch when all its "
        "pairs line up with the key: what position alone says. Axial's kernel is a sum of an x-only and "
        "a y-only wave, so it stays high along the whole row and column of the query: a cross-shaped "
        "artefact. Mixed frequencies mix x and y, so similarity falls off in every direction."
    )


kernel_panel()

# ------------------------------------------------------------------ spectrum
st.header("4. Spectrum")
spectra = {label: cached.get_spectrum(f, 64) for label, f in heads.items()}
st.plotly_chart(figures.fig_spectrum(spectra, f"Power spectrum of the kernel, layer {layer}, head {head}"),
                key="freq_spectrum")
st.caption(
    "The logit between two patches is a sum of waves cos(w_j · Δp), so its 2D Fourier transform has a "
    "peak at ±w_j and nowhere else. Axial can only express frequencies on the two axes; mixed covers "
    "diagonal directions too, which is what lets it represent diagonal relations between patches."
)

# ------------------------------------------------------------------ across layers
st.header("5. Across layers and heads")
if learned is None:
    st.info("Only learned RoPE-Mixed models have frequencies that change across layers and heads. "
            "Axial frequencies (naver RoPE-Axial, EVA-02, SBB, PE, DINOv3), and the theory view, are the same "
            "in every layer.")
else:
    summary = views.frequency_summary(learned)
    c1, c2 = st.columns(2)
    c1.plotly_chart(figures.fig_layer_head_heatmap(summary["mean_magnitude"], "Mean |w| per layer and head",
                                                   "rad/patch", value_name="mean |w|"), key="freq_mag")
    c2.plotly_chart(figures.fig_layer_head_heatmap(summary["direction_spread"], "Spread of directions per head",
                                                   "degrees", value_name="spread"), key="freq_spread")
    st.plotly_chart(figures.fig_freqs_by_layer(learned, head=head), key="freq_by_layer")
    st.caption(
        "Left: how fast each head's rotations turn on average. Right: how widely its frequency directions "
        "are spread (0° = all on one line). The scatter shows where training moved the vectors of the "
        "chosen head in each layer."
    )

# ------------------------------------------------------------------ position methods
st.header("6. Position methods on a larger grid")
st.markdown("Inference-time ways to run a model beyond its training grid change these vectors (and some "
            "scale the attention logits). Grey: as trained; colours: where each method moves them when the "
            "model runs on the grid below. Formulas and sources: `rope_viz.positions`.")
c1, c2, c3 = st.columns([3, 2, 1])
methods = c1.multiselect("methods", list(positions.METHODS), default=["interpolate", "ntk", "yarn"],
                         format_func=positions.LABELS.get, key="freq_methods")
method_grid = c2.slider("run on a grid of (patches per side)", 1, 8 * train_grid, 2 * train_grid,
                        key="freq_method_grid", help=f"Trained on {train_grid} x {train_grid}.")
shared.restore_choice("freq_method_source", labels)
source_label = c3.selectbox("vectors of", labels, index=len(labels) - 1, key="freq_method_source")
shared.write_url()  # the labels follow the source: a value Streamlit just reset to the default goes in the link now
# native: the head as its own model computes it on that grid (theory and the other kind: integer positions)
native_head = cached.get_model_freqs(spec.name, method_grid, method_grid)[layer, head] \
    if choice != THEORY and source_label == spec.family_label else None
moved = {m: cached.get_method_freqs(heads[source_label], m, (method_grid, method_grid), (train_grid, train_grid),
                                    native_head) for m in methods}
st.plotly_chart(method_figures.fig_method_vectors(
    heads[source_label], {positions.LABELS[m]: f for m, (f, _) in moved.items()},
    title=f"{source_label}, layer {layer}, head {head}: {train_grid} x {train_grid} -> {method_grid} x {method_grid}"),
    key="freq_method_vectors")
if moved:
    st.dataframe([{"method": positions.LABELS[m], "logit scale": round(scale, 4),
                   "fastest |w| (rad/patch)": float((f ** 2).sum(-1).max() ** 0.5),
                   "slowest |w| (rad/patch)": float((f ** 2).sum(-1).min() ** 0.5)} for m, (f, scale) in moved.items()],
                 hide_index=True, key="freq_method_table")
st.caption("Interpolate and normalised coordinates shrink every vector by t/g; NTK keeps the fastest pair and "
           "shrinks the slowest by t/g, geometrically in between; YaRN keeps pairs that turn many times over the "
           "training grid, interpolates those that turn less than once, ramps in between, and sharpens attention "
           "by its temperature; log-N leaves the vectors and scales the logits. Radius: log10 |w| + 6.")
