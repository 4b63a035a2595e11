"""Widgets the model-comparison pages share (not a page itself: app.py does not list it)."""
import streamlit as st

from rope_viz import models
from rope_viz.app import cached, urlstate, views
from rope_viz.scenes import data
from rope_viz.errors import RopeVizError

NONE = "(none)"
URL_SCHEMA = "url_schema"  # session key: the running page's {widget key: kind}
URL_RESTORED = "url_restored"  # session key: widget keys set from the link whose widget has not checked them yet
SAMPLES = sorted((models.ASSETS_DIR / "images").glob("scene_*.png"))


def available_models() -> tuple[list, list[str], dict]:
    """(specs, names, spec by name) of the models whose weights are here; stops the page with one sentence
    when there are none."""
    available = cached.get_available_models()
    if not available:
        st.error("No models are available; see the Home page.")
        st.stop()
    return available, [s.name for s in available], {s.name: s for s in available}


def pick_models(prefix: str) -> list[models.ModelSpec]:
    """Model A and optional model B (default: bundled APE beside bundled RoPE-Mixed), same patch size.

    Stops the page with one sentence when nothing can be compared.
    """
    available, names, spec_of = available_models()
    restore_choice(f"{prefix}_model_a", names)
    restore_choice(f"{prefix}_model_b", [NONE] + names)

    def default(pos: str, fallback: int) -> int:
        return next((i for i, s in enumerate(available) if s.source == "bundled" and s.pos == pos),
                    min(fallback, len(names) - 1))

    c1, c2 = st.columns(2)
    name_a = c1.selectbox("model A", names, index=default("ape", 0), format_func=lambda n: spec_of[n].display,
                          key=f"{prefix}_model_a")
    name_b = c2.selectbox("model B", [NONE] + names, index=1 + default("rope_mixed", 1),
                          format_func=lambda n: n if n == NONE else spec_of[n].display, key=f"{prefix}_model_b")
    specs = [spec_of[name_a]] + ([spec_of[name_b]] if name_b not in (NONE, name_a) else [])
    if len({s.patch_size for s in specs}) > 1:
        st.error("The two models use different patch sizes; pick models with the same patch size to compare them.")
        st.stop()
    return specs


def pick_model(prefix: str, pos: str = "rope_mixed") -> models.ModelSpec:
    """One model (default: the bundled model of position kind `pos`, else the first); widget key
    f"{prefix}_model". Stops the page with one sentence when no model is available."""
    available, names, spec_of = available_models()
    restore_choice(f"{prefix}_model", names)
    index = next((i for i, s in enumerate(available) if s.source == "bundled" and s.pos == pos), 0)
    name = st.selectbox("model", names, index=index, format_func=lambda n: spec_of[n].display, key=f"{prefix}_model")
    return spec_of[name]


def pick_image(prefix: str, patch: int, default_res: int, max_res: int = 2048, step: int | None = None):
    """Image source and resolution widgets -> (pixels (R, R, 3) uint8, R). Stops the page on bad input.

    step: sides must be multiples of it (default the patch size; a Qwen or GLM tower's patch x merge)."""
    step = step or patch
    if st.session_state.get(f"{prefix}_res_patch", step) != step:  # another model's patch size: its own default
        st.session_state[f"{prefix}_res"] = default_res
    st.session_state[f"{prefix}_res_patch"] = step
    what = f"the patch size ({patch} px)" if step == patch else f"{step} px (patch {patch} px x merge {step // patch})"
    c1, c2 = st.columns([2, 1])
    source = c1.radio("image", ["sample scene", "scene by seed", "upload"], horizontal=True, key=f"{prefix}_source")
    resolution = int(c2.number_input(
        "resolution (px)", min_value=step, max_value=max_res, value=default_res, step=step, key=f"{prefix}_res",
        help=f"A multiple of {what}. Trained at {default_res} px; larger sizes extrapolate."))
    if resolution % step:
        st.error(f"Resolution {resolution} px is not a multiple of {what}.")
        st.stop()
    try:
        if source == "sample scene":
            restore_choice(f"{prefix}_sample", SAMPLES)
            sample = st.selectbox("sample", SAMPLES, key=f"{prefix}_sample",
                                  format_func=lambda p: p.stem.split("_", 2)[-1].replace("_", " "))
            return cached.get_input_image("sample", str(sample), resolution), resolution
        if source == "scene by seed":
            c1, c2 = st.columns(2)
            seed = int(c1.number_input("scene seed", min_value=0, value=data.EVAL_SEEDS.start, key=f"{prefix}_seed",
                                       help="Seeds from 10,000,000 are held out from training."))
            mode = c2.selectbox("scene mode", data.MODES, key=f"{prefix}_mode",
                                help="zoom: the same scene at more pixels; canvas: same object size, wider view.")
            st.caption(f"Label: **{data.CLASS_NAMES[data.make_scene(seed).label]}**")
            return cached.get_input_image("scene", f"{seed}:{mode}", resolution), resolution
        upload = st.file_uploader("an image (PNG, JPEG, …; at most 40 megapixels)", key=f"{prefix}_upload")
        if upload is None:
            st.info("Upload an image to continue; nothing else changes.")
            st.stop()
        pixels = cached.get_input_image("upload", upload.name, resolution, upload.getvalue())
        note = data.describe_conversion(upload.getvalue(), upload.name)
        if note:
            st.info(note)
        return pixels, resolution
    except RopeVizError as err:
        st.error(str(err))
        st.stop()


# ---------------------------------------------------------------- shareable views (state in the URL)

def model_keys(prefix: str) -> dict[str, str]:
    """URL schema of pick_models' widgets."""
    return {f"{prefix}_model_a": "str", f"{prefix}_model_b": "str"}


def one_model_keys(prefix: str) -> dict[str, str]:
    """URL schema of pick_model's widget."""
    return {f"{prefix}_model": "str"}


def image_keys(prefix: str) -> dict[str, str]:
    """URL schema of pick_image's widgets (an upload cannot travel in a link; the rest can)."""
    return {f"{prefix}_source": "str", f"{prefix}_res": "int", f"{prefix}_sample": "str",
            f"{prefix}_seed": "int", f"{prefix}_mode": "str"}


def share_view(schema: dict[str, str]) -> None:
    """Call at the top of a page: restore its widgets from a pasted URL on arrival, write their current
    values into the URL on every run, and offer a "copy link" button in the sidebar.

    Widget values are already updated when a run starts, so writing here keeps the URL current even
    when the page stops early; a fragment calls write_url after its own widgets.
    """
    values, problems = urlstate.decode_params(st.query_params.to_dict(), schema)
    restored = st.session_state.setdefault(URL_RESTORED, set())
    for key, value in values.items():
        if key not in st.session_state:  # arrival: the URL wins; afterwards the widgets do
            st.session_state[key] = value
            restored.add(key)  # checked by restore_choice / restore_range when its widget is next drawn
    for problem in problems:
        st.warning(problem)
    st.session_state[URL_SCHEMA] = schema
    write_url()
    with st.sidebar:
        cached.show_copy_link()


def write_url() -> None:
    """Put the page's current widget values (share_view's schema) into the query string, only what changed.

    A fragment calls this after its widgets, so a click inside it updates the link too, and the first
    run's widget defaults are in the link as soon as the fragment has drawn.
    """
    encoded = urlstate.encode_state(st.session_state, st.session_state.get(URL_SCHEMA, {}))
    current = st.query_params.to_dict()
    changed = {key: text for key, text in encoded.items() if current.get(key) != text}
    if changed:  # one message for all of them: each message is a history entry and a route match in the browser
        st.query_params.update(changed)


def restore_choice(key: str, choices) -> None:
    """A value restored from the URL must be one of the widget's choices; otherwise say so and use the default.

    Only a value that came from the link is checked (once, when its widget is next drawn): a widget whose
    choices change with other widgets (another model's labels or sizes) is Streamlit's to reset, silently.
    """
    if key not in st.session_state.get(URL_RESTORED, ()) or key not in st.session_state:
        return
    st.session_state[URL_RESTORED].discard(key)
    if isinstance(st.session_state[key], list):  # a multiselect
        kept = [v for v in st.session_state[key] if v in choices]
        if not kept and st.session_state[key]:
            st.warning(f"The link's {key} names no choice that is here; the default is used instead.")
            del st.session_state[key]
        elif len(kept) < len(st.session_state[key]):
            st.warning(f"The link's {key} names choices that are not here; they are left out.")
            st.session_state[key] = kept
    elif isinstance(st.session_state[key], str):
        try:
            st.session_state[key] = urlstate.match_choice(st.session_state[key], choices, key)
        except RopeVizError as err:
            st.warning(str(err))
            del st.session_state[key]


def restore_range(key: str, min_value, max_value) -> None:
    """A number restored from the URL must lie in its widget's [min_value, max_value]; otherwise say so and
    use the default (Streamlit would reset it without a word)."""
    if key not in st.session_state.get(URL_RESTORED, ()) or key not in st.session_state:
        return
    st.session_state[URL_RESTORED].discard(key)
    value = st.session_state[key]
    if not min_value <= value <= max_value:
        st.warning(f"The link's {key}={value!r} is outside {min_value} to {max_value}; the default is used instead.")
        del st.session_state[key]


def port_notes(specs) -> None:
    """One sentence per chosen model whose timm port computes something other than its original code."""
    for note in views.port_notes(specs):
        st.info(note, icon=":material/info:")
