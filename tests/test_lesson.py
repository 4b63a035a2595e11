"""The lesson's numbers against hand-derived formulas, and the lesson page under AppTest."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from rope_viz import models, rope
from rope_viz.app import lesson

pytestmark = pytest.mark.slow  # page tests under AppTest: `make test`, not `make test-fast`


def test_one_pair_turns_by_w_dot_p_like_a_complex_rotation():
    w = lesson.lesson_freqs("mixed", 30.0)[2]
    turn = lesson.pair_turn(w, np.array([0.6, -0.8]), 5, 3)
    angle = w[0] * 5 + w[1] * 3
    assert turn["angle"] == pytest.approx(angle, abs=1e-6)
    z = complex(0.6, -0.8) * complex(math.cos(angle), math.sin(angle))  # rotation = multiplication by e^{i angle}
    assert np.allclose(turn["rotated"], [z.real, z.imag], atol=1e-6)
    assert turn["angles"][3, 5] == pytest.approx(angle, abs=1e-5)  # row y, column x


def test_rope_logit_depends_only_on_offset_added_does_not():
    freqs = lesson.lesson_freqs("axial")
    out = lesson.offset_logits(freqs, (5, 5), (8, 6), (3, -2))
    assert out["rope_after"] == pytest.approx(out["rope_before"], abs=1e-4)
    assert abs(out["added_after"] - out["added_before"]) > 1e-2
    # Hand-derived: q.k after rotation = sum_j Re(q_j conj(k_j) e^{i w_j.(p_q - p_k)}).
    import torch

    q, k = torch.randn(2, 2 * len(freqs), generator=torch.Generator().manual_seed(0)).double().numpy()
    qc, kc = q[0::2] + 1j * q[1::2], k[0::2] + 1j * k[1::2]
    delta = freqs @ np.array([5 - 8, 5 - 6], dtype=np.float64)
    assert out["rope_before"] == pytest.approx(float(np.real(qc * np.conj(kc) * np.exp(1j * delta)).sum()), abs=1e-4)


def test_partial_kernels_add_up_to_the_similarity_kernel():
    freqs = lesson.lesson_freqs("axial")
    first, full = lesson.partial_kernels(freqs, len(freqs), (7, 7)).values()
    import torch

    assert np.allclose(full, rope.similarity_kernel(torch.tensor(freqs), 14, 14, (7, 7)).numpy(), atol=1e-6)
    ys, xs = np.mgrid[0:14, 0:14]
    w = freqs[-1]
    assert np.allclose(first, np.cos(w[0] * (xs - 7) + w[1] * (ys - 7)), atol=1e-5)
    with pytest.raises(ValueError, match="pairs must be in 1..16"):
        lesson.partial_kernels(freqs, 0, (7, 7))


def test_mixed_is_axial_turned_and_axial_has_the_cross():
    assert np.allclose(lesson.lesson_freqs("mixed", 0.0), rope.axial_freqs(32, 10.0).numpy(), atol=1e-7)
    mixed = lesson.lesson_freqs("mixed", 30.0)
    assert np.allclose(np.hypot(*mixed.T), np.hypot(*rope.axial_freqs(32, 10.0).numpy().T), atol=1e-6)
    directions = np.degrees(np.arctan2(mixed[:, 1], mixed[:, 0]))
    assert np.allclose(directions[:8], 30.0, atol=1e-4) and np.allclose(directions[8:], 120.0, atol=1e-4)
    axial = lesson.cross_strength(lesson.kernel(lesson.lesson_freqs("axial"), (4, 7)), (4, 7))
    turned = lesson.cross_strength(lesson.kernel(mixed, (4, 7)), (4, 7))
    assert axial > 0.15 and axial > 5 * abs(turned), (axial, turned)


def test_measured_numbers_come_from_the_cards():
    specs = [s for s in models.list_bundled(models.BUNDLED_DIR)]
    rows = lesson.measured_top1(specs, "canvas")
    for spec in specs:
        card = json.loads((models.BUNDLED_DIR / f"{spec.name}.json").read_text())
        mine = {r["resolution"]: r["top1"] for r in rows if r["model"] == spec.label}
        assert mine == {int(k): v for k, v in card["eval"]["top1"]["canvas"].items()}
    summary = lesson.beyond_summary(rows, 128)
    assert len(summary) == len(specs) and summary[0]["top1"] >= summary[-1]["top1"]


@pytest.fixture
def real_bundled(monkeypatch):
    monkeypatch.delenv("ROPE_VIZ_MODELS_DIR", raising=False)
    from rope_viz.app import cached

    cached.get_available_models.clear()
    cached.get_all_models.clear()
    yield
    cached.get_available_models.clear()
    cached.get_all_models.clear()


def test_lesson_page_every_step_renders_and_responds(real_bundled):
    at = AppTest.from_file("../app.py", default_timeout=120)
    at.run()
    at.switch_page("pages/lesson.py").run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert len(at.get("plotly_chart")) == 5
    captions = [c.value for c in at.caption]
    for key, value in [("lesson_pair", 9), ("lesson_x", 10), ("lesson_y", 0), ("lesson_shift_x", -3),
                       ("lesson_shift_y", 4), ("lesson_pairs", 16), ("lesson_angle", 60), ("lesson_qx", 11)]:
        at.slider(key=key).set_value(value).run()
        assert not at.exception and not at.error and len(at.get("plotly_chart")) == 5, key
    assert [c.value for c in at.caption] != captions  # the numbers follow the controls
    w_y = 1 / 100 ** (4 * 1 / 32)  # pair 9 = the second y-pair of axial RoPE (theta 100, D = 32)
    assert f"w_9 = (0.000, {w_y:.3f}) rad/patch, so at (10, 0) the pair turns by 0.000·10 + {w_y:.3f}·0" in at.caption[0].value
    rope_line = at.caption[1].value
    before, after = (float(t.split(" ")[0]) for t in rope_line.split("RoPE: ")[1].split(" before, ")[:2])
    assert before == after
    at.radio(key="lesson_kind").set_value("mixed").run()
    at.radio(key="lesson_mode").set_value("zoom").run()
    at.select_slider(key="lesson_res").set_value(192).run()
    assert not at.exception and not at.error
    card = json.loads((models.BUNDLED_DIR / "scenes-rope-mixed.json").read_text())
    table = at.dataframe[0].value
    mixed = table[table["model"] == card["label"]]
    assert float(mixed["top1"].iloc[0]) == card["eval"]["top1"]["zoom"]["192"]
    assert any("192 px" in m.value and "24 x 24 patches" in m.value for m in at.markdown)
