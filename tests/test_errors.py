"""One base class for user-facing errors: who raises it, who catches it, and what is never invented."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest

from rope_viz import attribution, capture, data, models, rope, sweep
from rope_viz.app import views
from rope_viz.runtime import memory
from rope_viz.__main__ import main as cli_main
from rope_viz.errors import InputError, RopeVizError, check_options

ROOT = Path(__file__).resolve().parent.parent


def test_every_user_facing_class_derives_from_the_base():
    for cls in (data.ImageError, capture.CaptureError, models.ModelLoadError, sweep.SweepError, InputError):
        assert issubclass(cls, RopeVizError) and issubclass(cls, ValueError), cls


@pytest.mark.parametrize("call,message", [
    (lambda: rope.check_rope_config(62, 100.0), "head_dim must be a positive multiple of 4"),
    (lambda: rope.axial_freqs(64, theta=-1.0), "theta must be a positive finite number, got -1.0."),
    (lambda: rope.similarity_kernel(rope.axial_freqs(8), 4, 4, (9, 0)), "is outside the 4 x 4 grid"),
    (lambda: models.check_resolution(36, 8), "Resolution 36 px is not a positive multiple of the patch size (8 px)."),
    (lambda: models.pos_label("rope_spiral"), "Unknown position kind 'rope_spiral'"),
    (lambda: views.axial_vs_mixed("ape", np.zeros((1, 1, 2, 2))), "APE only models have no rotary frequencies."),
    (lambda: data.render_scene(0, 4096), "Scene resolution must be an integer from 8 to 1024 px, got 4096."),
    (lambda: data.render_scene(0, 64, "fisheye"), "Unknown scene mode 'fisheye'; valid: zoom, canvas."),
    (lambda: sweep.snap_resolution(-8, 8), "Resolution -8 px is not a positive size."),
    (lambda: attribution.attribute(torch.nn.Identity(), torch.zeros(1, 3, 8, 8), "lime"),
     "Unknown attribution method 'lime'; valid: ig, saliency"),
])
def test_user_facing_raises_are_ropeviz_errors(call, message):
    with pytest.raises(RopeVizError) as err:
        call()
    assert message in str(err.value)


def test_attention_view_choices_are_ropeviz_errors():
    qk = capture.QK(q=torch.zeros(1, 1, 1, 5, 4), k=torch.zeros(1, 1, 1, 5, 4), grid=(2, 2), num_prefix_tokens=1,
                    scale=0.5)
    with pytest.raises(InputError, match="Unknown attention view 'sideways'; valid: query, heads"):
        views.attention_panels(qk, "sideways", 0, 0, (0, 0))
    with pytest.raises(capture.CaptureError, match="Unknown head fusion 'median'"):
        capture.rollout(qk, "median")


def test_unknown_options_are_type_errors_naming_the_valid_ones():
    with pytest.raises(TypeError, match=r"f\(\) got unknown option\(s\) colour, size; valid options: a, b\."):
        check_options({"a": 1, "size": 2, "colour": 3}, ("a", "b"), "f()")
    check_options({"a": 1}, ("a", "b"), "f()")  # known names pass


def test_free_memory_is_never_invented(monkeypatch):
    monkeypatch.setattr(memory, "_meminfo", lambda field: None)  # no /proc/meminfo
    monkeypatch.setattr(memory, "_sysconf", lambda name: None)  # and no sysconf (Windows)
    assert memory.available_memory("cpu") is None
    assert sweep.memory_description("cpu") == "free memory unknown"
    module = models.build_eva(models.eva_architecture("ape", img_size=32, patch_size=8, embed_dim=32, depth=1,
                                                      num_heads=2, num_classes=10))
    sweep.check_memory(module, 10**5, 4096, 8, "cpu")  # nothing to compare against: no made-up refusal
    capture.check_capture_memory(module, 1, 4096, 4096, "cpu")
    assert memory.format_bytes(3 * 2**30) == "3.0 GiB" and memory.format_bytes(100_000) == "97.7 KiB"


@pytest.mark.parametrize("suffix,reader", [(".safetensors", "safetensors.torch.load_file"), (".pth", "torch.load")])
def test_memory_error_reading_a_checkpoint_is_not_called_corrupt(tmp_path, monkeypatch, suffix, reader):
    path = tmp_path / f"big{suffix}"
    save_file({"w": torch.zeros(4)}, str(path)) if suffix == ".safetensors" else torch.save({"w": torch.zeros(4)}, path)

    def out_of_memory(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(reader, out_of_memory)
    with pytest.raises(models.ModelLoadError) as err:
        models.read_state_dict(path)
    assert str(err.value).startswith(f"There was not enough free memory to read checkpoint big{suffix} (0 MiB)")
    assert "not a valid" not in str(err.value)


def _handlers(path: Path) -> list[str]:
    """The exception names every `except` in a file catches."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ExceptHandler):
            types = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
            names += [ast.unparse(t) for t in types] if node.type is not None else ["(bare)"]
    return names


def test_pages_and_cli_catch_only_the_base_class():
    for page in sorted((ROOT / "pages").glob("*.py")):
        assert set(_handlers(page)) <= {"RopeVizError"}, page.name
    assert set(_handlers(ROOT / "rope_viz" / "__main__.py")) <= {"RopeVizError", "KeyboardInterrupt"}


def test_a_bug_in_the_cli_is_not_a_polite_sentence(monkeypatch, bundled_dir):
    monkeypatch.setenv("ROPE_VIZ_MODELS_DIR", str(bundled_dir))

    def bug(*args, **kwargs):
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr(sweep, "accuracy_sweep", bug)
    with pytest.raises(ValueError, match="a bug, not bad input"):
        cli_main(["sweep", "--models", "tiny-ape", "--resolutions", "32"])


def test_a_bug_on_a_page_fails_loudly(monkeypatch, bundled_dir):
    monkeypatch.setenv("ROPE_VIZ_MODELS_DIR", str(bundled_dir))

    def bug(*args, **kwargs):
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr(rope, "axial_freqs", bug)
    at = AppTest.from_file("../app.py", default_timeout=120)
    at.run()
    at.switch_page("pages/frequencies.py").run()
    at.selectbox(key="freq_source").set_value("Theory: RoPE-Axial vs RoPE-Mixed").run()
    at.number_input(key="freq_head_dim").set_value(44).run()  # a new cache key: the patched function runs
    assert not at.error and at.exception and "a bug, not bad input" in at.exception[0].message
