"""Anatomy: one model's RoPE taken apart on one image: a logit pair by pair, frequency usage, a self-check,
frequency coverage, token norms and attention sinks."""
import math

import streamlit as st

from pages import shared
from rope_viz.app import anatomy_figures, anatomy_views, cached, figures, views
from rope_viz.measure import anatomy, positions
from rope_viz.scenes import data
from rope_viz.errors import RopeVizError

cached.use_app_navigation()  # before anything is drawn (see its docstring)

BANDS = ("drop_low", "drop_high")  # methods with a k: how many pairs to switch off
URL_KEYS = {**shared.one_model_keys("anat"), **shared.image_keys("anat"), "anat_method": "str", "anat_band_k": "int",
            "anat_layer": "int", "anat_head": "int", "anat_query": "str", "anat_query_x": "int", "anat_query_y": "int",
            "anat_key": "str", "anat_key_x": "int", "anat_key_y": "int"}

st.title("Anatomy")
st.markdown(
    "One model, one image, taken apart: how an attention logit is built from the D/2 feature pairs of a head, "
    "which frequencies each head relies on, whether the model's rotation is the RoPE rope-viz reads from it, "
    "which frequencies the image's size leaves without position, and which tokens soak up attention."
)
shared.share_view(URL_KEYS)

spec = shared.pick_model("anat")
if spec.is_tower:  # the logit split needs q and k before the rotation, which a tower keeps inside its attention
    st.info(f"{spec.display} is a Hugging Face vision tower: it rotates q and k inside its attention, so the logit "
            "anatomy (which needs them before the rotation) is not available; Frequencies and Attention show it.")
    st.stop()
patch = spec.patch_size
pixels, resolution = shared.pick_image("anat", patch, spec.train_res)
try:
    trained = cached.get_model_freqs(spec.name)  # (L, H, D/2, 2) at the training grid; None: APE only
except RopeVizError as err:
    st.error(f"{spec.display}: {err}")
    st.stop()
half = 0 if trained is None else trained.shape[-2]
c1, c2 = st.columns([3, 1])
shared.restore_choice("anat_method", list(positions.METHODS))
name = c1.selectbox("position method", list(positions.METHODS), format_func=positions.LABELS.get, key="anat_method",
                    help="native: positions as the model computes them (the default). drop_low / drop_high switch "
                         "the rotation off for the k slowest / fastest pairs of every head (p-RoPE, Barbero et al. "
                         "2025); the others change positions beyond the training grid (rope_viz.positions).")
method = name
if name in BANDS and half:
    shared.restore_range("anat_band_k", 0, half)
    k = int(c2.number_input("k (pairs switched off per head)", 0, half, min(4, half), key="anat_band_k",
                            help=f"0 is the model itself; {half} switches every pair of a head off."))
    method = f"{name}:{k}"
elif name in BANDS:
    st.info(f"{spec.family_label} rotates nothing, so there is no frequency band to switch off; shown as native.")
    method = "native"
shared.port_notes([spec])

key = data.pixels_key(pixels)
device = cached.get_device()
try:
    qk, _ = cached.get_capture(spec.name, device, key, pixels, method)
    freqs, _ = cached.get_run_freqs(spec.name, device, *qk.grid, method)
except RopeVizError as err:
    st.error(f"{spec.display}: {err}")
    st.stop()
gh, gw = qk.grid
depth, heads, head_dim = qk.num_layers, qk.q.shape[2], qk.q.shape[-1]
labels = anatomy_views.prefix_labels(qk.num_prefix_tokens, spec.num_registers)
train_grid = (spec.train_res // patch, spec.train_res // patch)
NO_ROTATION = f"{spec.family_label} models rotate nothing (an absolute position table only), so there is no RoPE here."

for state_key, size, default in (("anat_layer", depth, depth - 1), ("anat_head", heads, 0)):  # another model: fewer
    st.session_state[state_key] = min(max(int(st.session_state.get(state_key, default)), 0), size - 1)
c1, c2 = st.columns(2)
layer = int(c1.slider("layer", 0, depth - 1, key="anat_layer")) if depth > 1 else 0
head = int(c2.slider("head", 0, heads - 1, key="anat_head")) if heads > 1 else 0
st.caption(f"**{spec.family_label}**: {depth} layers x {heads} heads of {head_dim} channels ({head_dim // 2} feature "
           f"pairs); {gw} x {gh} patches at {resolution} px (trained on {train_grid[1]} x {train_grid[0]}); prefix "
           f"tokens (never rotated): {spec.prefix_label}; position method: {positions.method_label(method)}.")


def download(rows: list[dict], file_name: str, widget_key: str, label: str = "Download as CSV") -> None:
    st.download_button(label, data=lambda: views.to_csv(rows), file_name=file_name, mime="text/csv",
                       key=widget_key, on_click="ignore")  # the CSV is built when the button is pressed


# ------------------------------------------------------------------ 1. one logit
def token_picker(col, role: str, prefix: str, default_xy: tuple[int, int]) -> int:
    """A token: a patch by (x, y), or CLS / a register where the model has them. -> token index"""
    kinds = ["patch"] + labels
    shared.restore_choice(prefix, kinds)
    kind = col.selectbox(f"{role} token", kinds, key=prefix) if labels else "patch"
    for state_key, size, default in ((f"{prefix}_x", gw, default_xy[0]), (f"{prefix}_y", gh, default_xy[1])):
        st.session_state[state_key] = min(max(int(st.session_state.get(state_key, default)), 0), size - 1)
    a, b = col.columns(2)
    x = a.number_input(f"{role} x (patch column)", 0, gw - 1, key=f"{prefix}_x", disabled=kind != "patch")
    y = b.number_input(f"{role} y (patch row)", 0, gh - 1, key=f"{prefix}_y", disabled=kind != "patch")
    return anatomy_views.pick_token(kind, int(x), int(y), qk.grid, labels)


@st.fragment
def logit_panel():
    st.header("1. One logit, pair by pair")
    if freqs is None:
        st.info(NO_ROTATION)
        return
    st.markdown(
        "With q and k split into their feature pairs, the logit q · k × scale is a sum of one term per pair, "
        "|q_j||k_j| cos(c_j + w_j · Δp): c_j is the angle between the pair's content in q and k, w_j · Δp the "
        "angle the offset Δp = p_key − p_query adds. Pick a query and a key token.")
    c1, c2 = st.columns(2)
    query = token_picker(c1, "query", "anat_query", (gw // 2, gh // 2))
    key_token = token_picker(c2, "key", "anat_key", (max(gw // 2 - 2, 0), max(gh // 2 - 1, 0)))
    shared.write_url()
    try:
        view = cached.get_logit_pairs(spec.name, device, key, pixels, method, layer, head, query, key_token)
    except RopeVizError as err:
        st.error(str(err))
        return
    dx, dy = view["offset"]
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("the model's logit (q · k × scale)", f"{view['logit']:.6f}")
    m2.metric("sum of the bars", f"{view['sum']:.6f}")
    m3.metric("offset key − query (patches)", "none (a prefix token)" if math.isnan(dx) else f"({dx:+g}, {dy:+g})")
    m4.metric("attention weight (softmax of the row)", f"{view['attention']:.4f}")
    q_name, k_name = (anatomy_views.token_label(t, qk.grid, labels) for t in (query, key_token))
    st.plotly_chart(anatomy_figures.fig_logit_pairs(
        view["rows"], f"Layer {layer}, head {head}: query {q_name} → key {k_name}"), key="anat_pairs_chart")
    st.caption(
        f"The bars add up to {view['sum']:.6f}; the model computed {view['logit']:.6f} (difference "
        f"{abs(view['sum'] - view['logit']):.1e}, float32 rounding). **Same position** keeps each pair's content "
        "and puts the key on the query's position (offset 0): what the head would say without position. "
        "**Content removed** keeps the offset and lines the contents up (c_j = 0): what position alone says, "
        "scaled by the pairs' sizes. Where the bars follow the diamonds the logit is content; where they follow "
        "the circles it is position. Fast pairs (left of each group) turn a lot per patch and tell neighbours "
        "apart; slow pairs barely turn and carry content. Prefix tokens are never rotated: their offset is none.")
    download([{"model": spec.name, "method": method, "layer": layer, "head": head, "query": q_name, "key": k_name,
               **row} for row in view["rows"]], f"logit_pairs_{spec.name}_L{layer}H{head}.csv", "anat_pairs_csv")


logit_panel()

# ------------------------------------------------------------------ 2. usage
st.header("2. Frequency usage")
if freqs is None:
    st.info(NO_ROTATION)
else:
    usage = cached.get_frequency_usage(spec.name, device, key, pixels, method)
    st.markdown(
        f"A pair's **usage** is scale · mean |q_j| · mean |k_j| over the patches: how far that pair can move a "
        f"patch-to-patch logit. **Criterion** (after Barbero et al., ICLR 2025): a head is **positional** when at "
        f"least {anatomy.POSITIONAL_SHARE:.0%} of its usage sits on the faster half of its pairs (|w_j| above the "
        f"head's median), **semantic** when at most {anatomy.SEMANTIC_SHARE:.0%} does, and **mixed** in between.")
    c1, c2 = st.columns(2)
    c1.plotly_chart(anatomy_figures.fig_usage(usage["usage"][:, head], usage["magnitude"][:, head], layer, head),
                    key="anat_usage_chart")
    c2.plotly_chart(anatomy_figures.fig_head_kinds(usage["share"], usage["kind"], anatomy.POSITIONAL_SHARE,
                                                   anatomy.SEMANTIC_SHARE), key="anat_kinds_chart")
    st.dataframe([{"layer": la, **{f"head {h}": f"{usage['kind'][la][h]} ({usage['share'][la, h]:.2f})"
                                   for h in range(heads)}} for la in range(depth)], hide_index=True, key="anat_kinds")
    st.caption(
        "Left: a positional head's usage climbs towards the right (fast pairs), a semantic head's sits on the "
        "left (slow pairs, which barely turn across the image and so carry content). Right and table: each "
        "head's share of usage on its faster half and its kind. Early layers are often positional, later ones "
        "semantic; drop_high switches the fast band off and shows what the positional heads lose.")
    download(anatomy_views.usage_rows(usage), f"frequency_usage_{spec.name}.csv", "anat_usage_csv")

# ------------------------------------------------------------------ 3. self-check
st.header("3. Is this RoPE right?")
try:
    check = cached.get_self_check(spec.name, device)
except RopeVizError as err:
    st.error(str(err))
    check = None
if check is not None:
    if freqs is None:
        st.info(check["message"])
    elif check["ok"]:
        st.success(check["message"])
    else:
        st.error(check["message"])
    if check["rows"]:
        number = st.column_config.NumberColumn(format="%.1e")
        st.dataframe(check["rows"], hide_index=True, key="anat_check",
                     column_config={c: number for c in check["rows"][0] if c != "layer"})
        st.caption(
            "On a random 6 x 6-patch image: (a) every patch is shifted by (3, 2) patches; RoPE depends on offsets "
            "only, so layer 0's patch-to-patch logits must not move (float32 rounding, about 1e-7 of the largest "
            "logit). Later layers and the logits of CLS/registers may move: prefix tokens are never rotated and an "
            "absolute table is never shifted, so the shift reaches them. (b) The rotation rope-viz computes from "
            "the adapter's frequencies, positions and pair layout must equal the model's own in every layer "
            "(layout error about 1e-7 or 0); a wrong pair layout or offset fails with one sentence saying which.")
        download(check["rows"], f"self_check_{spec.name}.csv", "anat_check_csv")

# ------------------------------------------------------------------ 4. coverage
st.header("4. Frequency coverage")
if freqs is None:
    st.info(NO_ROTATION)
else:
    rows = anatomy_views.coverage_rows(freqs[layer, head], qk.grid, train_grid)
    st.plotly_chart(anatomy_figures.fig_coverage(
        rows, qk.grid, train_grid, f"Layer {layer}, head {head}: turns across the image, training grid vs "
                                   f"{gw} x {gh}"), key="anat_coverage_chart")
    quiet = [r["pair"] for r in rows if r["no position"]]
    alias = [r["pair"] for r in rows if r["aliasing"]]
    riflex = next((r["pair"] for r in rows if r["RIFLEx"]), None)
    st.markdown(
        f"On {gw} x {gh} patches, **{len(quiet)} of {len(rows)} pairs** turn less than "
        f"{anatomy.NO_POSITION_TURNS} times across the image (no position), **{len(alias)}** turn faster than π "
        f"rad per patch (neighbours alias)" + (f", and the RIFLEx pair is **j={riflex}**." if riflex is not None else "."))
    st.dataframe(rows, hide_index=True, key="anat_coverage")
    st.caption(
        "Turns = (|w_x| gw + |w_y| gh) / 2π: how many times a pair's rotation wraps over the image. A pair "
        "below 0.1 turn looks the same everywhere, so it can only carry content; one above π rad/patch turns so "
        "fast that neighbouring patches alias. The RIFLEx pair (Zhao et al. 2025) is the one whose period is "
        "closest to the training image's extent: past the training grid it is the first to wrap around, the "
        "pair RIFLEx slows down. Compare the two lines: a larger grid adds turns to every pair (integer "
        "positions) unless the method or the family rescales the vectors.")
    download(rows, f"frequency_coverage_{spec.name}_L{layer}H{head}_{resolution}px.csv", "anat_coverage_csv")

# ------------------------------------------------------------------ 5. norms and sinks
st.header("5. Token norms and sinks")
try:
    norms = cached.get_token_norms(spec.name, device, key, pixels, method)
    received = cached.get_attention_received(spec.name, device, key, pixels, method, layer)
except RopeVizError as err:
    st.error(str(err))
    st.stop()
npt = len(labels)
c1, c2 = st.columns(2)
c1.plotly_chart(figures.fig_heatmaps({f"layer {layer}": norms[layer, npt:].reshape(gh, gw)},
                                     f"Output-token norms after layer {layer} (patches)", "‖x‖ (L2)",
                                     colorscale=figures.SEQUENTIAL, value_name="norm"), key="anat_norm_map")
c2.plotly_chart(anatomy_figures.fig_norms_by_layer(norms, labels), key="anat_norms_chart")
if labels:
    for col, (i, label) in zip(st.columns(min(npt, 6)), enumerate(labels[:6])):
        col.metric(f"{label}: norm after layer {layer}", f"{norms[layer, i]:.2f}")
st.markdown(f"**Tokens receiving the most attention in layer {layer}** (mean over heads and queries)")
st.dataframe(anatomy_views.sink_rows(norms, received, layer, qk.grid, labels), hide_index=True, key="anat_sinks")
st.caption(
    "A sink is a token that many queries attend to without reading much from it; it often has a much larger "
    "norm than the other patches (Darcet et al. 2024, 'Vision Transformers Need Registers'). Look for a few "
    "bright patches in the map, usually in plain background, and for CLS or registers far above the patch median "
    "in later layers. '× an even share' is the attention received divided by 1/N (1: no more than any token's fair share).")
download(anatomy_views.norm_rows(norms, received, layer, qk.grid, labels), f"token_norms_{spec.name}_{resolution}px.csv",
         "anat_norms_csv")
