"""Pages of the extrapolation lab under AppTest: Features (every control, clicks, downloads, bad input), method sections."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from page_values import array, figure
from rope_viz import models
from rope_viz.measure import features

pytestmark = pytest.mark.slow  # page tests under AppTest: `make test`, not `make test-fast`

TIMEOUT = 120


@pytest.fixture(autouse=True)
def bundled_models(bundled_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("ROPE_VIZ_MODELS_DIR", str(bundled_dir))
    monkeypatch.setenv("ROPE_VIZ_CACHE", str(tmp_path / "cache"))
    from rope_viz.app import cached

    cached.get_available_models.clear()
    cached.get_all_models.clear()


def features_page() -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/features.py").run()
    assert not at.exception, at.exception
    return at


def charts(at):
    return [c for c in at.get("plotly_chart")]


def test_features_every_control():
    at = features_page()
    assert not at.error
    assert at.multiselect(key="feat_res").value == [32, 64, 96]  # training size and 2x, 3x by default
    assert at.selectbox(key="feat_model_a").value == "tiny-ape" and at.selectbox(key="feat_model_b").value == "tiny-rope_mixed"
    assert len(charts(at)) == 2  # one figure per model: PCA row + similarity row
    at.multiselect(key="feat_res").set_value([16, 32, 48]).run()
    at.number_input(key="feat_u").set_value(0.1).run()
    at.number_input(key="feat_v").set_value(0.9).run()
    assert not at.exception and not at.error
    at.selectbox(key="feat_sample").set_value(at.selectbox(key="feat_sample").options[1]).run()
    at.radio(key="feat_source").set_value("scene by seed").run()
    at.number_input(key="feat_seed").set_value(10_000_005).run()
    assert not at.exception and not at.error
    at.selectbox(key="feat_model_b").set_value("(none)").run()
    assert len(charts(at)) == 1
    at.selectbox(key="feat_model_a").set_value("tiny-rope_axial").run()
    assert not at.exception and not at.error
    assert {b.key for b in at.get("download_button")} >= {"feat_csv", "feat_png"}
    # Stability: every control, then the curve, table and CSV.
    at.multiselect(key="feat_stab_models").set_value(["tiny-ape", "tiny-rope_mixed"]).run()
    at.multiselect(key="feat_stab_res").set_value([32, 48, 64]).run()
    at.number_input(key="feat_stab_n").set_value(2).run()
    at.button(key="feat_stab_run").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[-1].value
    assert list(table["model"]) == ["tiny-ape"] * 3 + ["tiny-rope_mixed"] * 3
    assert list(table["similarity"][table["resolution"] == 32]) == pytest.approx([1.0, 1.0], abs=1e-5)
    assert "feat_stab_csv" in {b.key for b in at.get("download_button")}


def test_features_upload_and_bad_upload():
    at = features_page()
    at.radio(key="feat_source").set_value("upload").run()
    assert not at.exception and any("Upload an image" in i.value for i in at.info)
    buffer = io.BytesIO()
    Image.new("L", (50, 30), 128).save(buffer, format="PNG")
    at.file_uploader(key="feat_upload").upload("grey.png", buffer.getvalue()).run()
    assert not at.exception and not at.error and len(charts(at)) == 2
    # Model A's similarity map at 32 px: its features of the flat grey image (128 everywhere after the resize),
    # cosine to the query patch at the image centre (u = v = 0.5: patch (2, 2) of 4 x 4).
    loaded = models.load_model("tiny-ape")
    grey = torch.full((1, 3, 32, 32), 128, dtype=torch.uint8)
    expected = features.patch_similarity(features.compute_patch_features(loaded, loaded.normalise(grey))[0], (2, 2))
    drawn = [t for t in figure(at, loaded.spec.display)["data"] if t["type"] == "heatmap"][0]  # resolutions in order
    np.testing.assert_allclose(array(drawn["z"]), expected.double().numpy(), rtol=0, atol=1e-5)
    at.file_uploader(key="feat_upload").upload("bad.png", b"not an image").run()
    assert not at.exception and len(at.error) == 1


def test_frequencies_method_section_every_control():
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/frequencies.py").run()
    assert not at.exception and not at.error
    table = at.dataframe[-1].value
    assert list(table["method"]) == ["interpolate (positions x t/g)", "NTK-aware (base per axis)",
                                     "YaRN-2D (paper's ramp in turns + temperature)"]
    at.multiselect(key="freq_methods").set_value(["extrapolate", "log_n", "normalised"]).run()
    at.slider(key="freq_method_grid").set_value(12).run()  # tiny models: trained on 4 x 4
    assert not at.exception and not at.error
    table = at.dataframe[-1].value
    assert list(table["logit scale"]) == pytest.approx([1.0, math.log(144) / math.log(16), 1.0], abs=1e-4)
    at.selectbox(key="freq_method_source").set_value(at.selectbox(key="freq_method_source").options[0]).run()
    assert not at.exception and not at.error


def test_attention_method_selector_changes_the_maps_beyond_the_training_grid():
    import json

    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/attention.py").run()
    at.selectbox(key="att_model_a").set_value("tiny-rope_mixed").run()
    at.number_input(key="att_res").set_value(96).run()  # 3x the tiny models' training size
    at.radio(key="att_engine").set_value("server").run()  # Plotly heatmaps (the browser explorer is drawn in JS)
    assert not at.exception and not at.error

    def heatmaps():
        return [t["z"] for c in at.get("plotly_chart") for t in json.loads(c.proto.spec)["data"] if t["type"] == "heatmap"]

    before = heatmaps()
    for method in ("interpolate", "ntk", "yarn", "log_n", "normalised"):
        at.selectbox(key="att_method").set_value(method).run()
        assert not at.exception and not at.error, (method, at.exception)
        assert heatmaps() != before, method
    at.number_input(key="att_res").set_value(32).run()  # on the training grid every method is the model itself
    on_grid = heatmaps()
    at.selectbox(key="att_method").set_value("extrapolate").run()
    assert heatmaps() == on_grid
