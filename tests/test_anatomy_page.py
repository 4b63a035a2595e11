"""The Anatomy page and the Attention page's head grid under AppTest: the values they show are the library's,
every model family renders, APE-only models get one sentence per RoPE section."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from helpers import run_page
from rope_viz import anatomy, models
from rope_viz.app import anatomy_views, views
from rope_viz.measure import capture
from rope_viz.models import registry
from rope_viz.scenes import data
from test_pages import FAMILY_ARCHS, family_checkpoints  # noqa: F401  (the fixture: random weights of every family)

pytestmark = pytest.mark.slow  # page tests under AppTest: `make test`, not `make test-fast`

TIMEOUT = 120
SAMPLE = sorted((models.ASSETS_DIR / "images").glob("scene_*.png"))[0]  # the pages' default image
CSVS = {"anat_pairs_csv", "anat_usage_csv", "anat_check_csv", "anat_coverage_csv", "anat_norms_csv"}


@pytest.fixture(autouse=True)
def bundled_models(bundled_dir, monkeypatch):
    monkeypatch.setenv("ROPE_VIZ_MODELS_DIR", str(bundled_dir))
    from rope_viz.app import cached

    cached.get_available_models.clear()
    cached.get_all_models.clear()


def decode(array) -> np.ndarray:
    """A Plotly array as it reaches the browser: a list, or a typed array (dtype + base64, optional shape)."""
    if isinstance(array, dict):
        flat = np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
        shape = array.get("shape")
        return flat.reshape([int(n) for n in str(shape).split(",")]) if shape else flat
    return np.asarray(array, dtype=np.float64)


def chart(at, key: str) -> dict:
    return json.loads(next(c for c in at.get("plotly_chart") if c.proto.id.endswith(key)).proto.spec)


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(label))


def page_capture(name: str, resolution: int, method: str = "native"):
    loaded = models.load_model(name)
    return loaded, views.capture_image(loaded, data.input_image("sample", str(SAMPLE), resolution), method)


def test_anatomy_shows_the_models_logit_pair_by_pair():
    at = run_page("pages/anatomy.py")
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="anat_model").value == "tiny-rope_mixed"  # the bundled RoPE-Mixed model by default
    assert [h.value for h in at.header] == ["1. One logit, pair by pair", "2. Frequency usage", "3. Is this RoPE right?",
                                            "4. Frequency coverage", "5. Token norms and sinks"]
    # The logit shown is q . k * scale of the model's own capture: layer 1 (the last), head 0, patch (2, 2) -> (0, 1).
    _, qk = page_capture("tiny-rope_mixed", 32)
    query, key = capture.patch_token(qk, 2, 2), capture.patch_token(qk, 0, 1)
    expected = float(anatomy.logit_pairs(qk, 1, 0, query, key).sum())
    assert float(metric(at, "the model's logit")) == pytest.approx(expected, abs=5e-6)
    assert float(metric(at, "sum of the bars")) == pytest.approx(expected, abs=5e-6)
    assert metric(at, "offset key") == "(-2, -1)"
    bars = chart(at, "anat_pairs_chart")["data"]
    assert [t["name"] for t in bars] == ["the model's term", "same position (offset 0)",
                                         "content removed (content angle 0)"]
    assert decode(bars[0]["y"]).sum() == pytest.approx(expected, abs=1e-5) and len(decode(bars[0]["y"])) == 8
    assert any("matches the model's own in every layer" in s.value for s in at.success)
    assert {b.key for b in at.get("download_button")} == CSVS
    assert len(at.dataframe[0].value) == 2  # the head kinds table: one row per layer


def test_anatomy_controls_band_methods_and_prefix_tokens():
    at = run_page("pages/anatomy.py")
    at.selectbox(key="anat_method").set_value("drop_high").run()
    at.number_input(key="anat_band_k").set_value(3).run()
    at.slider(key="anat_layer").set_value(0).run()
    at.slider(key="anat_head").set_value(1).run()
    at.selectbox(key="anat_query").set_value("CLS").run()
    at.number_input(key="anat_key_x").set_value(3).run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    _, qk = page_capture("tiny-rope_mixed", 32, "drop_high:3")  # what the model computes with 3 fast pairs off
    expected = float(anatomy.logit_pairs(qk, 0, 1, 0, capture.patch_token(qk, 3, 1)).sum())
    assert float(metric(at, "the model's logit")) == pytest.approx(expected, abs=5e-6)
    assert metric(at, "offset key") == "none (a prefix token)"
    assert any("drop the 3 highest frequencies" in c.value for c in at.caption)
    rows = at.dataframe[2].value  # kinds, self-check, coverage of layer 0, head 1 under the method: 3 pairs without rotation
    assert int(rows["no position"].sum()) >= 3 and (rows["|w| (rad/patch)"] == 0).sum() == 3
    at.number_input(key="anat_res").set_value(64).run()  # twice the training grid: more turns per pair
    assert not at.exception and not at.error
    assert at.query_params["anat_method"] == "drop_high" and at.query_params["anat_band_k"] == "3"


def test_anatomy_of_an_ape_model_is_one_sentence_per_rope_section():
    at = run_page("pages/anatomy.py")
    at.selectbox(key="anat_model").set_value("tiny-ape").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    notes = [i.value for i in at.info]
    assert len(notes) == 4 and sum("rotate nothing" in n for n in notes) == 4, notes  # 1, 2, 3 and 4
    assert [c.proto.id.split("-")[-1] for c in at.get("plotly_chart")] == ["anat_norm_map", "anat_norms_chart"]


@pytest.mark.parametrize("family", list(FAMILY_ARCHS))
def test_anatomy_renders_every_family(family, family_checkpoints, monkeypatch):  # noqa: F811
    from rope_viz.app import cached

    monkeypatch.setattr(registry, "_LOCAL", {})
    path, arch, kwargs = family_checkpoints[family]
    spec = models.register_local(path, arch, name=f"local-{family}", model_kwargs=kwargs)
    cached.get_available_models.clear()
    cached.get_all_models.clear()
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT)
    at.query_params.update({"anat_model": spec.name, "anat_res": str(6 * spec.patch_size)})  # 6 x 6: every family
    at.run()
    at.switch_page("pages/anatomy.py").run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert at.selectbox(key="anat_model").value == spec.name
    if family == "ape":
        assert len(at.info) == 4 and len(at.get("plotly_chart")) == 2
        return
    assert len(at.get("plotly_chart")) == 6  # pairs, usage, kinds, coverage, norm map, norms by layer
    assert float(metric(at, "the model's logit")) == pytest.approx(float(metric(at, "sum of the bars")), abs=2e-6)
    assert len(at.success) == 1  # the self-check passes: the adapter reads the model's own rotation
    assert len(at.metric) == 4 + spec.num_prefix_tokens  # the logit's four and one per CLS/register


def test_attention_head_grid_is_layers_by_heads_of_the_query_maps():
    at = run_page("pages/attention.py")
    at.toggle(key="att_heads_all").set_value(True).run()  # off by default
    at.number_input(key="att_qx").set_value(1).run()
    at.number_input(key="att_qy").set_value(2).run()
    assert not at.exception and not at.error
    grid = chart(at, "att_grid_tiny-rope_mixed")
    picks = next(t for t in grid["data"] if t.get("name") == "heads")
    cells = {(int(la), int(h)) for la, h, *_ in picks["customdata"]}
    assert cells == {(la, h) for la in range(2) for h in range(2)}  # the tiny models: 2 layers x 2 heads
    z = decode(next(t for t in grid["data"] if t["type"] == "heatmap")["z"])
    assert z.shape == (2 * 5 - 1, 2 * 5 - 1)  # 4 x 4 patches per map, a one-patch gap between maps
    _, qk = page_capture("tiny-rope_mixed", 32)
    maps = anatomy_views.head_grid(qk, (1, 2))  # (L, H, 4, 4)
    tile = z[5:9, 5:9]  # layer 1, head 1
    assert np.allclose(tile, maps[1, 1] / maps[1, 1].max(), atol=1e-6)
    assert torch.allclose(torch.from_numpy(maps).sum((-1, -2)),
                          1 - capture.attention_rows(qk, capture.patch_token(qk, 1, 2))[0, :, :, 0], atol=1e-6)
    assert any(c.proto.id.endswith("att_grid_tiny-ape") for c in at.get("plotly_chart"))  # model A's grid too
