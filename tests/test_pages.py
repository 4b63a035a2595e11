"""Streamlit pages under AppTest: every control changed once, bad input shown as st.error."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest

from helpers import run_page
from page_values import axial_theory, drawn_mean_distance, drawn_vectors, figure, mean_distance, overlay_pixels
from rope_viz import data, models, rope
from rope_viz.models import registry
from rope_viz.app import explorer

pytestmark = pytest.mark.slow  # page tests under AppTest: `make test`, not `make test-fast`

TIMEOUT = 120


@pytest.fixture(autouse=True)
def bundled_models(bundled_dir, monkeypatch):
    monkeypatch.setenv("ROPE_VIZ_MODELS_DIR", str(bundled_dir))
    from rope_viz.app import cached

    cached.get_available_models.clear()
    cached.get_all_models.clear()


def test_home_lists_models_and_device():
    at = run_page("pages/home.py")
    assert any("Compute device" in h.value for h in at.subheader)
    assert any("CPU" in m.value or "CUDA" in m.value for m in at.markdown)
    table = at.dataframe[0].value
    assert list(table["model"][:5]) == [f"tiny-{p}" for p in ("ape", "rope_axial", "rope_axial_ape", "rope_mixed",
                                                               "rope_mixed_ape")]
    assert (table["source"] == "hub").sum() == len(models.HUB_MODELS)
    dino = table[table["model"] == "vit_small_patch16_dinov3.lvd1689m"].iloc[0]
    assert (dino["family"], dino["prefix tokens"], dino["classes"], dino["patch (px)"]) == \
        ("DINOv3", "CLS + 4 registers", "none (features)", 16)
    assert dino["mean/std from"] == "timm pretrained_cfg"


def test_frequencies_theory_every_control():
    at = run_page("pages/frequencies.py")
    assert at.selectbox(key="freq_source").value == "tiny-rope_mixed"  # a bundled model by default
    at.selectbox(key="freq_source").set_value("Theory: RoPE-Axial vs RoPE-Mixed").run()
    assert len(at.get("plotly_chart")) == 5 and not at.error  # 4 sections + the position-methods section
    for key, value in [("freq_head_dim", 32), ("freq_heads", 4), ("freq_theta_axial", 50.0),
                       ("freq_theta_mixed", 5.0), ("freq_seed", 3), ("freq_head", 2), ("freq_pair", 7),
                       ("freq_phase_grid", 30), ("freq_kernel_grid", 40), ("freq_qx", 3), ("freq_qy", 35)]:
        widget = next(w for w in [*at.number_input, *at.slider] if w.key == key)
        widget.set_value(value).run()
        assert not at.exception and not at.error, (key, at.exception, at.error)
    # The axial panel draws the hand-derived ladder of the settings above: f_i = 50^(-4i/32).
    np.testing.assert_allclose(drawn_vectors(at, 0), axial_theory(32, 50.0), rtol=1e-6, atol=0)
    at.toggle(key="freq_log").set_value(True).run()
    assert not at.exception and len(at.get("plotly_chart")) == 5


@pytest.mark.parametrize("model", ["tiny-rope_mixed", "tiny-rope_axial_ape"])
def test_frequencies_model_mode(model):
    at = run_page("pages/frequencies.py")
    at.selectbox(key="freq_source").set_value(model).run()
    assert not at.exception and not at.error
    at.slider(key="freq_layer").set_value(1).run()
    at.slider(key="freq_head").set_value(1).run()
    assert not at.exception
    charts = len(at.get("plotly_chart"))
    assert charts == (8 if model == "tiny-rope_mixed" else 5)  # learned mixed adds the across-layers views; +1 methods
    # The vectors drawn are the loaded model's own for the chosen layer and head (a learned model right of theory).
    spec = models.get_spec(model)
    freqs = rope.model_freqs(models.load_model(spec).module)[1, 1].numpy()  # (D/2, 2)
    np.testing.assert_array_equal(drawn_vectors(at, 1 if spec.pos.startswith("rope_mixed") else 0),
                                  freqs.astype(np.float64))


def explorer_shown(at) -> bool:
    return any(e.key == "att_explorer" for e in at.get("bidi_component"))


def test_attention_every_control():
    at = run_page("pages/attention.py")
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="att_model_a").value == "tiny-ape"
    assert at.selectbox(key="att_model_b").value == "tiny-rope_mixed"
    # By default the maps are drawn by the browser-side explorer from one layer's q and k.
    payload = next(e for e in at.get("bidi_component") if e.key == "att_explorer").proto.bytes
    header = explorer.unpack_header(payload)
    assert [m["label"].split(" [")[0] for m in header["models"]] == ["tiny APE", "tiny RoPE-Mixed"]
    assert header["layer"] == 1 and header["grid"] == [4, 4] and header["view"] == "query"
    assert [(m["heads"], m["tokens"], m["dim"]) for m in header["models"]] == [(2, 17, 16)] * 2
    assert len(at.get("plotly_chart")) == 2  # distance, entropy
    at.radio(key="att_engine").set_value("server").run()
    assert len(at.get("plotly_chart")) == 4  # one map per model, distance, entropy
    for view in ("heads", "mean", "cls", "rollout", "query"):
        at.selectbox(key="att_view").set_value(view).run()
        assert not at.exception and not at.error, (view, at.exception)
    for key, value in [("att_layer", 0), ("att_head", 1), ("att_opacity", 0.2), ("att_qx", 3), ("att_qy", 0)]:
        next(w for w in [*at.slider, *at.number_input] if w.key == key).set_value(value).run()
        assert not at.exception and not at.error, key
    at.selectbox(key="att_fusion").set_value("max").run()
    at.selectbox(key="att_model_b").set_value("tiny-rope_axial_ape").run()
    at.selectbox(key="att_model_a").set_value("tiny-rope_mixed_ape").run()
    at.number_input(key="att_res").set_value(64).run()  # twice the training grid
    assert not at.exception and not at.error
    at.radio(key="att_source").set_value("scene by seed").run()
    at.number_input(key="att_seed").set_value(10_000_123).run()
    at.selectbox(key="att_mode").set_value("canvas").run()
    assert not at.exception and not at.error and len(at.get("plotly_chart")) == 4
    at.selectbox(key="att_model_b").set_value("(none)").run()
    assert not at.exception and len(at.get("plotly_chart")) == 3
    # The distance curve is the model's own forward on the image its map is drawn on.
    spec = models.get_spec("tiny-rope_mixed_ape")
    pixels = overlay_pixels(figure(at, spec.display))
    assert pixels.shape == (64, 64, 3)
    np.testing.assert_allclose(drawn_mean_distance(at, spec.display), mean_distance(models.load_model(spec), pixels),
                               rtol=0, atol=1e-5)


# The smallest timm model of every family, two blocks of two heads (head_dim and rope config unchanged).
FAMILY_ARCHS = {
    "naver_axial": ("vit_small_patch16_rope_224", 64), "naver_mixed": ("vit_small_patch16_rope_mixed_ape_224", 64),
    "eva02": ("eva02_tiny_patch14_224", 56), "sbb": ("vit_medium_patch16_rope_reg1_gap_256", 64),
    "pe": ("vit_pe_core_tiny_patch16_384", 64), "dinov3": ("vit_small_patch16_dinov3_qkvb", 64),
    "gemma4": ("gemma4_vit_167m_enc", 96), "ape": ("deit3_small_patch16_224", 64),
    "qwen3": ("qwen3_vit_88m", None), "deepseek": ("deepseek_vit_412m_enc", None),
}
HEADLESS = ("pe", "dinov3", "gemma4", "deepseek")  # as on the hub: features, no classifier (Qwen3: a classifier wrapper)
# Families that patchify any size themselves are built without img_size (trained at timm's input size).
ANY_SIZE = {"gemma4": dict(intermediate_size=256), "qwen3": {}, "deepseek": dict(global_pool="")}


@pytest.fixture(scope="module")
def family_checkpoints(tmp_path_factory):
    """Random-weight checkpoints of every family (10 classes; PE, DINOv3 and Gemma4 headless, as on the hub)."""
    directory, out = tmp_path_factory.mktemp("families"), {}
    for family, (arch, size) in FAMILY_ARCHS.items():
        torch.manual_seed(0)
        kwargs = dict(depth=2, embed_dim=128, num_heads=2, img_size=size)
        if family in ANY_SIZE:  # no img_size (they patchify any size), a small MLP for Gemma4, no projector for DeepSeek
            kwargs = dict(depth=2, embed_dim=128, num_heads=2, **ANY_SIZE[family])
        classes = 0 if family in HEADLESS else 10
        module = timm.create_model(arch, pretrained=False, num_classes=classes, **kwargs)
        path = directory / f"{family}.safetensors"
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
        out[family] = (path, arch, kwargs)
    return out


@pytest.mark.parametrize("family", list(FAMILY_ARCHS))
def test_frequencies_and_attention_render_every_family(family, family_checkpoints, monkeypatch):
    from rope_viz.app import cached

    monkeypatch.setattr(registry, "_LOCAL", {})
    path, arch, kwargs = family_checkpoints[family]
    spec = models.register_local(path, arch, name=f"local-{family}", model_kwargs=kwargs)
    assert spec.family == family
    cached.get_available_models.clear()
    cached.get_all_models.clear()
    if family != "ape":
        at = run_page("pages/frequencies.py")
        at.selectbox(key="freq_source").set_value(spec.name).run()
        assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
        assert len(at.get("plotly_chart")) == (8 if family == "naver_mixed" else 5)  # + the position-methods chart
        assert any(spec.family_label in c.value for c in at.caption)
        # The figure draws exactly rope.model_freqs of the loaded model (layer 0, head 0, training grid).
        panel = 1 if family == "naver_mixed" else 0  # a learned model is drawn right of the axial theory
        drawn = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][panel]  # typed arrays: dtype + base64
        x, y = (np.frombuffer(base64.b64decode(drawn[a]["bdata"]), dtype=drawn[a]["dtype"]) for a in ("x", "y"))
        freqs = rope.model_freqs(models.load_model(spec).module)[0, 0].numpy()  # (D/2, 2)
        half = len(freqs)
        np.testing.assert_array_equal(x[:half], freqs[:, 0].astype(np.float64))
        np.testing.assert_array_equal(y[:half], freqs[:, 1].astype(np.float64))
    at = run_page("pages/attention.py")
    at.selectbox(key="att_model_a").set_value(spec.name).run()
    at.selectbox(key="att_model_b").set_value("(none)").run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])  # browser explorer
    at.radio(key="att_engine").set_value("server").run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert len(at.get("plotly_chart")) == 3  # the map, distance, entropy
    # The distance curve is the model's own forward (native positions) on the image its map is drawn on.
    pixels = overlay_pixels(figure(at, spec.display))
    assert pixels.shape == (spec.train_res, spec.train_res, 3)
    np.testing.assert_allclose(drawn_mean_distance(at, spec.display), mean_distance(models.load_model(spec), pixels),
                               rtol=0, atol=1e-5)
    if family in HEADLESS:  # beside the family's port note, where timm's port differs from the original
        assert any("has no classifier head" in i.value for i in at.info), [i.value for i in at.info]
    at.selectbox(key="att_view").set_value("cls").run()
    assert not at.exception and not at.error, [e.value for e in at.error]


@pytest.fixture
def scene_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROPE_VIZ_CACHE", str(tmp_path / "cache"))
    from rope_viz.app import cached

    cached.get_sweep_cells().clear()
    cached.get_attention_results().clear()


def test_resolution_sweep_every_control(scene_cache):
    at = run_page("pages/resolution.py")
    assert not at.error and at.multiselect(key="res_models").value[:2] == ["tiny-ape", "tiny-rope_axial"]
    at.multiselect(key="res_models").set_value(["tiny-ape", "tiny-rope_mixed"]).run()
    at.multiselect(key="res_list").set_value([32, 40, 64]).run()
    at.number_input(key="res_limit").set_value(20).run()
    at.button(key="res_run").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    table = at.dataframe[0].value
    assert len(table) == 6 and set(table["n"]) == {20} and set(table["resolution"]) == {32, 40, 64}
    assert len(at.get("plotly_chart")) == 1
    for view in ("change from the training resolution (points)", "top-5 (%)"):
        at.radio(key="res_view").set_value(view).run()
        assert not at.exception
    at.selectbox(key="res_reported").set_value("base").run()
    assert not at.exception and len(at.get("plotly_chart")) == 2
    at.selectbox(key="res_reported").set_value("none").run()
    at.multiselect(key="res_methods").set_value(["interpolate", "yarn"]).run()  # one curve per model x method
    at.selectbox(key="res_data").set_value("shapes:canvas").run()
    assert not at.exception and "Run sweep (12 of 12" in at.button(key="res_run").label
    at.button(key="res_run").click().run()
    table = at.dataframe[0].value
    assert not at.exception and set(table["mode"]) == {"canvas"} and set(table["method"]) == {"interpolate", "yarn"}
    curves = {t.get("name") for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]}
    assert {"tiny-ape · interpolate", "tiny-rope_mixed · yarn"} <= curves and len(table) == 12
    at.number_input(key="res_att_n").set_value(2).run()
    at.button(key="res_att_run").click().run()
    assert not at.exception and not at.error and len(at.get("plotly_chart")) == 3
    at.toggle(key="res_collapse").set_value(True).run()  # the 2x-canvas measurement, on the page's 20 scenes
    assert not at.exception and not at.error and len(at.get("plotly_chart")) == 4


def test_attribution_every_control():
    at = run_page("pages/attribution.py")
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == 1 and len(at.table[0].value) == 2
    for method in ("saliency", "smoothgrad", "occlusion", "gradcam", "rollout", "ig"):
        at.selectbox(key="attr_method").set_value(method).run()
        assert not at.exception and not at.error, (method, at.exception)
    table = at.table[0].value  # IG chose its steps and says how well they add up
    assert set(table["IG steps"]) <= {32, 64, 128, 256, 512}
    off = [share is None or share != share or share > 1.0 for share in table["|delta| / gap %"]]  # None/NaN: no gap
    assert len(at.warning) == sum(off)
    at.radio(key="attr_display").set_value("signed").run()
    at.slider(key="attr_opacity").set_value(0.3).run()
    at.selectbox(key="attr_steps").set_value(16).run()
    assert set(at.table[0].value["IG steps"]) == {16}
    at.selectbox(key="attr_target").set_value("star, dot right").run()
    assert not at.exception and not at.error
    assert set(at.table[0].value["target"]) == {"star, dot right"}
    at.toggle(key="attr_sanity").set_value(True).run()
    assert not at.exception and len(at.table[0].value) == 4  # each model and its random copy
    at.selectbox(key="attr_method").set_value("gradcam").run()
    at.slider(key="attr_block").set_value(0).run()
    at.number_input(key="attr_res").set_value(48).run()
    at.radio(key="attr_source").set_value("scene by seed").run()
    at.selectbox(key="attr_mode").set_value("canvas").run()
    at.selectbox(key="attr_model_b").set_value("(none)").run()
    assert not at.exception and not at.error and len(at.table[0].value) == 2


# Bad input of every kind (images, checkpoints, resolutions, folders, theory settings, CLI) is in
# tests/test_bad_input.py, the one list.


def test_attention_view_restores_from_url_and_is_written_back():
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT)
    link = {"att_model_a": "tiny-rope_axial", "att_model_b": "(none)", "att_source": "scene by seed",
            "att_seed": "10000042", "att_mode": "canvas", "att_res": "48", "att_engine": "server", "att_view": "heads",
            "att_layer": "0", "att_qx": "5", "att_qy": "1"}
    at.query_params.update(link)
    at.run()
    at.switch_page("pages/attention.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="att_model_a").value == "tiny-rope_axial"
    assert at.number_input(key="att_seed").value == 10_000_042 and at.number_input(key="att_res").value == 48
    assert (at.selectbox(key="att_view").value, at.slider(key="att_layer").value) == ("heads", 0)
    assert (at.number_input(key="att_qx").value, at.number_input(key="att_qy").value) == (5, 1)
    assert len(at.get("plotly_chart")) == 3  # one model's maps (server path), distance, entropy
    spec = models.get_spec("tiny-rope_axial")  # the link's scene (seed 10000042, canvas) at the link's 48 px
    pixels = overlay_pixels(figure(at, spec.display))
    np.testing.assert_array_equal(pixels, np.asarray(data.render_scene(10_000_042, 48, "canvas")[0]))
    np.testing.assert_allclose(drawn_mean_distance(at, spec.display), mean_distance(models.load_model(spec), pixels),
                               rtol=0, atol=1e-5)
    at.slider(key="att_layer").set_value(1).run()
    assert at.query_params["att_layer"] == "1" and at.query_params["att_seed"] == "10000042"


def test_bad_link_values_are_one_sentence_each():
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT)
    at.query_params.update({"att_model_a": "no-such-model", "att_layer": "deep"})
    at.run()
    at.switch_page("pages/attention.py").run()
    assert not at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert "att_layer='deep' is not a valid int" in warnings and "att_model_a='no-such-model'" in warnings
    assert at.selectbox(key="att_model_a").value == "tiny-ape"  # the default


def open_link(page: str, link: dict[str, str]) -> AppTest:
    """The app opened on `page` from a pasted link carrying `link` as query parameters."""
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT)
    at.query_params.update(link)
    at.run()
    at.switch_page(page).run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    return at


def test_frequencies_model_grid_travels_in_the_link(family_checkpoints, monkeypatch):
    from rope_viz.app import cached

    monkeypatch.setattr(registry, "_LOCAL", {})
    path, arch, kwargs = family_checkpoints["eva02"]  # normalised positions: the grid widget is shown
    spec = models.register_local(path, arch, name="local-eva02", model_kwargs=kwargs)
    cached.get_available_models.clear()
    cached.get_all_models.clear()
    at = open_link("pages/frequencies.py", {"freq_source": spec.name, "freq_model_grid": "6"})
    assert not at.warning and at.number_input(key="freq_model_grid").value == 6
    assert any("Vectors for a 6 x 6 grid." in c.value for c in at.caption)
    at.number_input(key="freq_model_grid").set_value(9).run()
    assert at.query_params["freq_model_grid"] == "9"
    at = open_link("pages/frequencies.py", {"freq_source": spec.name, "freq_model_grid": "500"})
    assert [w.value for w in at.warning] == \
        ["The link's freq_model_grid=500 is outside 1 to 128; the default is used instead."]
    assert at.number_input(key="freq_model_grid").value == spec.train_res // spec.patch_size  # the default


def test_frequencies_method_source_travels_in_the_link():
    learned = "naver RoPE-Mixed (this model, learned)"  # the default: the bundled RoPE-Mixed model's own vectors
    at = open_link("pages/frequencies.py", {"freq_method_source": "RoPE-Axial (theory)"})
    assert not at.warning and at.selectbox(key="freq_method_source").value == "RoPE-Axial (theory)"
    at.selectbox(key="freq_method_source").set_value(learned).run()
    assert at.query_params["freq_method_source"] == learned
    at.selectbox(key="freq_source").set_value("Theory: RoPE-Axial vs RoPE-Mixed").run()  # other labels: no warning
    assert not at.exception and not at.warning
    assert at.query_params["freq_method_source"] == at.selectbox(key="freq_method_source").value
    at = open_link("pages/frequencies.py", {"freq_method_source": "no-such-vectors"})
    assert [w.value for w in at.warning] == ["The link's freq_method_source='no-such-vectors' is not one of the "
                                             "choices here; the default is used instead."]
    assert at.selectbox(key="freq_method_source").value == learned


def test_features_stability_models_travel_in_the_link():
    at = open_link("pages/features.py", {"feat_stab_models": "tiny-rope_axial,tiny-rope_mixed_ape"})
    assert not at.warning and at.multiselect(key="feat_stab_models").value == ["tiny-rope_axial", "tiny-rope_mixed_ape"]
    at.multiselect(key="feat_stab_models").set_value(["tiny-ape", "tiny-rope_axial_ape"]).run()
    assert at.query_params["feat_stab_models"] == "tiny-ape,tiny-rope_axial_ape"
    at = open_link("pages/features.py", {"feat_stab_models": "no-such-model"})
    assert [w.value for w in at.warning] == \
        ["The link's feat_stab_models names no choice that is here; the default is used instead."]
    assert at.multiselect(key="feat_stab_models").value == ["tiny-ape", "tiny-rope_mixed"]  # models A and B


def test_features_stability_resolutions_travel_in_the_link():
    default = [16, 32, 64, 96, 128]  # half to four times the training resolution
    at = open_link("pages/features.py", {"feat_stab_res": "24,48"})
    assert not at.warning and at.multiselect(key="feat_stab_res").value == [24, 48]
    at.multiselect(key="feat_stab_res").set_value([40, 80]).run()
    assert at.query_params["feat_stab_res"] == "40,80"
    at = open_link("pages/features.py", {"feat_stab_res": "999"})  # not a multiple of the 8 px patch
    assert [w.value for w in at.warning] == \
        ["The link's feat_stab_res names no choice that is here; the default is used instead."]
    assert at.multiselect(key="feat_stab_res").value == default
    at = open_link("pages/features.py", {"feat_stab_res": "32,big"})
    assert [w.value for w in at.warning] == \
        ["The link's feat_stab_res='32,big' is not a valid list of int; the default is used instead."]
    assert at.multiselect(key="feat_stab_res").value == default


def test_attention_html_download_holds_the_explorer_payload():
    """The HTML download is the page's own explorer payload in one offline file; its size is in the label."""
    from rope_viz.app import standalone, views

    at = run_page("pages/attention.py")
    payload = next(e for e in at.get("bidi_component") if e.key == "att_explorer").proto.bytes
    header = explorer.unpack_header(payload)
    labels = [m["label"] for m in header["models"]]
    page = standalone.explorer_html({"layer 1": payload}, f"{' vs '.join(labels)}: "
                                    f"{views.ATTENTION_VIEWS[header['view']]} at {header['resolution'][0]} px")
    button = next(b for b in at.get("download_button") if b.key == "att_html")
    assert button.proto.label == f"Download this view as HTML ({len(page.encode()) / 1e6:.3f} MB)"  # under 0.1 MB
    at.multiselect(key="att_html_layers").set_value([0, 1]).run()
    assert not at.exception and not at.error
    bigger = next(b for b in at.get("download_button") if b.key == "att_html").proto.label
    assert float(bigger.split("(")[1].split()[0]) > float(button.proto.label.split("(")[1].split()[0])
    at.multiselect(key="att_html_heads").set_value([1]).run()  # one head of two: a smaller file
    assert not at.exception and not at.error
    smaller = next(b for b in at.get("download_button") if b.key == "att_html").proto.label
    assert float(smaller.split("(")[1].split()[0]) < float(bigger.split("(")[1].split()[0])
