"""Hugging Face towers as models: a tiny full VLM saved with save_pretrained registers from its directory
(models.register_local, the CLI), only its vision tower is built and read, pages render it, and every bad
directory is one sentence."""
from __future__ import annotations

import json
import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import run_page
from rope_viz import capture, models, rope
from rope_viz.models import registry
from rope_viz.models.specs import ModelLoadError
from test_towers import CASES

SAVED = [case for case in CASES if case.save_vlm is not None]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each case's tiny full VLM, saved once: {key: directory}."""
    out = {}
    for case in SAVED:
        path = tmp_path_factory.mktemp(case.key)
        case.save_vlm(path)
        out[case.key] = path
    return out


@pytest.fixture(scope="module")
def registered(saved):
    """Each saved VLM registered once with models.register_local: {key: ModelSpec} (the registry as it was after)."""
    before = dict(registry._LOCAL)
    try:
        return {case.key: models.register_local(saved[case.key], name=f"tower-{case.key}") for case in SAVED}
    finally:
        registry._LOCAL.clear()
        registry._LOCAL.update(before)


@pytest.fixture
def no_local(monkeypatch):
    monkeypatch.setattr(registry, "_LOCAL", {})


@pytest.fixture
def towers_listed(registered, monkeypatch):
    """The registry lists exactly the registered towers (pages and names see them)."""
    monkeypatch.setattr(registry, "_LOCAL", {spec.name: spec for spec in registered.values()})
    return registered


def tower_parameters(case) -> int:
    return sum(p.numel() for p in case.build().hf.parameters())


@pytest.mark.parametrize("case", SAVED, ids=str)
def test_a_full_vlm_directory_registers_as_its_vision_tower(case, saved, towers_listed):
    directory = saved[case.key]
    everything = sum(t.numel() for f in directory.glob("*.safetensors") for t in load_file(str(f)).values())
    spec = towers_listed[case.key]  # models.register_local(directory), once for the module
    assert spec.is_tower and spec.family == case.key and spec.num_classes == 0 and spec.source == "local"
    loaded = models.load_model(spec.name)
    built = sum(p.numel() for p in loaded.module.parameters())
    assert built == tower_parameters(case)  # the tower's own parameters, no more
    if case.key != "dinov3_hf":  # DINOv3 is a tower on its own: the checkpoint is the tower
        assert built < everything  # only the tower: no language model
    grid = (spec.train_res // spec.patch_size,) * 2
    freqs = rope.model_freqs(loaded.module, grid)
    assert freqs is None if spec.pos == "ape" else freqs.shape[:2] == (spec.depth, spec.num_heads)
    image = torch.randn(1, 3, *case.sizes[0])
    qk = capture.capture_qk(loaded, image)
    assert qk.q.shape[1:3] == (spec.depth, spec.num_heads)


def test_bad_directories_are_one_sentence(saved, tmp_path, no_local):
    case = SAVED[0]
    directory = saved[case.key]
    with pytest.raises(ModelLoadError, match="has no config.json"):
        models.register_local(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="bert config, which is not a supported vision tower"):
        models.register_local(tmp_path)
    with pytest.raises(ModelLoadError, match="neither a directory nor a model in the local Hugging Face cache"):
        models.register_local("nobody/not-a-model")
    # a checkpoint without vision weights
    blind = tmp_path / "blind"
    blind.mkdir()
    (blind / "config.json").write_text((directory / "config.json").read_text())
    save_file({"lm_head.weight": torch.zeros(2, 2)}, str(blind / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="has no vision-tower weights"):
        models.register_local(blind)
    # config and weights that disagree: the vision tensors of another shape
    bent = tmp_path / "bent"
    bent.mkdir()
    (bent / "config.json").write_text((directory / "config.json").read_text())
    state = {}
    for file in directory.glob("*.safetensors"):
        state.update(load_file(str(file)))
    key = next(k for k in state if k.startswith(case.build().adapter.weight_prefixes) and state[k].ndim == 2)
    state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
    save_file(state, str(bent / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="do not fit its config"):
        models.register_local(bent)


def check_page(at, where: str) -> None:
    assert not at.exception and not at.error, (where, at.exception, [e.value for e in at.error])


@pytest.mark.slow
def test_frequencies_and_attention_pages_render_every_tower(towers_listed):
    """Every tower, registered from its tiny full VLM, in one Frequencies and one Attention session (a model switch
    each): no error, its family caption, the no-classes sentence, windows named where it has them, no rollout there."""
    from rope_viz.app import cached

    specs = towers_listed
    cached.get_available_models.clear()
    cached.get_all_models.clear()
    freq = run_page("pages/frequencies.py")
    for case in SAVED:
        spec = specs[case.key]
        if spec.pos != "ape":
            freq.selectbox(key="freq_source").set_value(spec.name).run()
            check_page(freq, spec.name)
            assert any(spec.family_label in c.value for c in freq.caption), spec.name
    att = run_page("pages/attention.py")
    att.selectbox(key="att_model_b").set_value("(none)").run()
    att.radio(key="att_engine").set_value("server").run()
    for case in SAVED:
        spec = specs[case.key]
        att.selectbox(key="att_model_a").set_value(spec.name).run()
        att.number_input(key="att_res").set_value(spec.train_res).run()  # Llama 4 takes only its configured size
        check_page(att, spec.name)
        assert any("has no classifier head" in i.value for i in att.info), [i.value for i in att.info]
        tower = case.build()
        windowed = any(tower.adapter.windowed_layers(tower))
        assert windowed == any("attend within windows" in c.value for c in att.caption), spec.name
        assert ("Rollout (CLS, all layers)" in att.selectbox(key="att_view").options) != windowed
    att.radio(key="att_engine").set_value("browser").run()  # the explorer's payload for the last tower
    check_page(att, "browser engine")


@pytest.mark.slow
def test_features_resolution_and_anatomy_pages_take_a_tower(towers_listed):
    from rope_viz.app import cached

    spec = towers_listed[SAVED[0].key]
    cached.get_available_models.clear()
    cached.get_all_models.clear()
    at = run_page("pages/features.py")
    at.selectbox(key="feat_model_a").set_value(spec.name).run()
    at.selectbox(key="feat_model_b").set_value("(none)").run()
    at.multiselect(key="feat_res").set_value([spec.step * 4, spec.step * 6]).run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert at.get("plotly_chart"), "no feature maps"
    at.toggle(key="feat_aspect").set_value(True).run()  # the sample scene is square: the same maps
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    cached.get_attention_results().clear()
    at = run_page("pages/resolution.py")
    at.multiselect(key="res_models").set_value([spec.name]).run()
    at.multiselect(key="res_list").set_value([32, 64]).run()
    assert any("no classifier head" in i.value for i in at.info), [i.value for i in at.info]
    at.number_input(key="res_att_n").set_value(1).run()
    at.button(key="res_att_run").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert len(at.get("plotly_chart")) == 2  # distance and entropy against resolution, no accuracy chart
    at = run_page("pages/anatomy.py")
    at.selectbox(key="anat_model").set_value(spec.name).run()
    assert not at.exception and any("Hugging Face vision tower" in i.value for i in at.info)


def test_the_cli_takes_a_tower_directory(saved, no_local, capsys):
    from rope_viz.__main__ import main

    case = SAVED[0]
    directory = saved[case.key]
    assert models.resolve_name(str(directory)) == f"local:{directory.name}"  # a directory wherever a name goes
    assert main(["info", "--add", str(directory)]) == 0
    assert case.build().adapter.label in capsys.readouterr().out
    assert main(["eval", "--model", str(saved[case.key]), "--resolutions", "32", "--limit", "2"]) == 2
    assert "has no classifier head" in capsys.readouterr().err  # one sentence, exit status 2


def test_a_hub_id_in_the_local_cache_registers_without_downloading(saved, tmp_path, no_local, monkeypatch):
    """'org/name' is looked up in the Hugging Face cache only (local_files_only): a snapshot there registers."""
    import shutil

    import huggingface_hub.constants

    case = SAVED[0]
    repo = tmp_path / "hub" / "models--someone--tiny-vlm"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(saved[case.key], snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    spec = models.register_local("someone/tiny-vlm")
    assert spec.name == "local:someone/tiny-vlm" and spec.family == case.key and spec.path == str(snapshot)
    assert sum(p.numel() for p in models.load_model(spec.name).module.parameters()) == tower_parameters(case)


def test_native_dynamic_resolution_keeps_the_image_aspect(towers_listed):
    """An upload keeps its aspect for a tower (about r^2 pixels, sides multiples of patch x merge), and the tower's
    dense features come on that grid."""
    import io

    from PIL import Image

    from rope_viz.measure import features
    from rope_viz.scenes import data

    spec = towers_listed[SAVED[0].key]
    buffer = io.BytesIO()
    Image.new("RGB", (300, 150), (200, 30, 30)).save(buffer, format="PNG")
    pixels = data.input_image("upload", "wide.png", 4 * spec.step, buffer.getvalue(), aspect_step=spec.step)
    h, w = pixels.shape[:2]
    assert (h % spec.step, w % spec.step) == (0, 0) and w == 2 * h  # 2:1 kept
    assert abs(h * w - (4 * spec.step) ** 2) <= 2 * spec.step * max(h, w)  # about r^2 pixels
    assert data.keep_aspect_size(150, 300, 4 * spec.step, spec.step) == (h, w)
    grid = features.image_patch_features(models.load_model(spec.name), pixels).shape[:2]
    assert grid == (h // spec.patch_size, w // spec.patch_size)
