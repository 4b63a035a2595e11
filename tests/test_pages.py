"""Streamlit pages under AppTest: every control changed once, bad input shown as st.error."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

TIMEOUT = 120


@pytest.fixture(autouse=True)
def bundled_models(bundled_dir, monkeypatch):
    monkeypatch.setenv("ROPE_VIZ_MODELS_DIR", str(bundled_dir))
    from rope_viz import cached

    cached.get_available_models.clear()
    cached.get_all_models.clear()


def run_page(page: str) -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT)
    at.run()
    if page != "pages/home.py":
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def test_home_lists_models_and_device():
    at = run_page("pages/home.py")
    assert any("Compute device" in h.value for h in at.subheader)
    assert any("CPU" in m.value or "CUDA" in m.value for m in at.markdown)
    table = at.dataframe[0].value
    assert list(table["model"][:5]) == [f"tiny-{p}" for p in ("ape", "rope_axial", "rope_axial_ape", "rope_mixed",
                                                               "rope_mixed_ape")]
    assert (table["source"] == "hub").sum() == 15


def test_home_local_checkpoint_errors_are_one_sentence(tmp_path):
    at = run_page("pages/home.py")
    at.text_input[0].input(str(tmp_path / "missing.safetensors"))
    at.button[0].click().run()
    assert not at.exception
    assert "does not exist" in at.error[0].value


def test_frequencies_theory_every_control():
    at = run_page("pages/frequencies.py")
    assert len(at.get("plotly_chart")) == 4 and not at.error
    for key, value in [("freq_head_dim", 32), ("freq_heads", 4), ("freq_theta_axial", 50.0),
                       ("freq_theta_mixed", 5.0), ("freq_seed", 3), ("freq_head", 2), ("freq_pair", 7),
                       ("freq_phase_grid", 30), ("freq_kernel_grid", 40), ("freq_qx", 3), ("freq_qy", 35)]:
        widget = next(w for w in [*at.number_input, *at.slider] if w.key == key)
        widget.set_value(value).run()
        assert not at.exception and not at.error, (key, at.exception, at.error)
    at.toggle(key="freq_log").set_value(True).run()
    assert not at.exception and len(at.get("plotly_chart")) == 4


@pytest.mark.parametrize("key,value,message", [
    ("freq_head_dim", 62, "head_dim must be a positive multiple of 4"),
    ("freq_theta_axial", 0.0, "theta must be a positive finite number"),
    ("freq_theta_mixed", -3.0, "theta must be a positive finite number"),
])
def test_frequencies_bad_theory_input_shows_error(key, value, message):
    at = run_page("pages/frequencies.py")
    at.number_input(key=key).set_value(value).run()
    assert not at.exception
    assert message in at.error[0].value


@pytest.mark.parametrize("model", ["tiny-rope_mixed", "tiny-rope_axial_ape"])
def test_frequencies_model_mode(model):
    at = run_page("pages/frequencies.py")
    at.selectbox(key="freq_source").set_value(model).run()
    assert not at.exception and not at.error
    at.slider(key="freq_layer").set_value(1).run()
    at.slider(key="freq_head").set_value(1).run()
    assert not at.exception
    charts = len(at.get("plotly_chart"))
    assert charts == (7 if model == "tiny-rope_mixed" else 4)  # learned mixed adds the across-layers views
