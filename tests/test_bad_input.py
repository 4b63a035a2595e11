"""Bad input, one list: every kind a user can give, through the pages (AppTest) and the CLI.

Each kind gets one sentence (st.error, st.info for an image that was converted, or one `error:` line
with exit status 2), the app keeps running, and nothing the user had is lost: selections in
session_state and finished sweep cells survive. Each page test walks its kinds in ONE session, so a
kind that broke the session would fail every kind after it.

Kinds (29): images 11 (IMAGES), checkpoints 7 (CHECKPOINTS), resolutions 4 (0, negative, not a
patch multiple, too large: test_attention_resolutions and CLI), ImageFolder sets 5 (FOLDERS),
theory settings 3 (THEORY), CLI arguments (CLI).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest

from helpers import run_page
from page_values import axial_theory, drawn_mean_distance, drawn_vectors, explorer_pixels, mean_distance
from rope_viz import data, models, sweep
from rope_viz.runtime import memory
from rope_viz.__main__ import main as cli_main

pytestmark = pytest.mark.slow  # page tests under AppTest: `make test`, not `make test-fast`

TIMEOUT = 180


def one_sentence(text: str) -> bool:
    """One line, ending in a full stop, no traceback or exception repr."""
    return "\n" not in text.strip() and text.strip().endswith(".") and "Traceback" not in text


# ---------------------------------------------------------------- fixtures

@pytest.fixture(autouse=True)
def bundled_models(bundled_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("ROPE_VIZ_MODELS_DIR", str(bundled_dir))
    monkeypatch.setenv("ROPE_VIZ_CACHE", str(tmp_path / "scene-cache"))
    from rope_viz.app import cached

    cached.get_available_models.clear()
    cached.get_all_models.clear()
    cached.get_sweep_cells().clear()


def shows_one_error(at: AppTest, fragment: str, kind: str) -> None:
    assert not at.exception, (kind, at.exception)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and fragment in errors[0] and one_sentence(errors[0]), (kind, errors)


# ---------------------------------------------------------------- images

def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def _scene_png() -> bytes:
    return encode(data.render_scene(data.EVAL_SEEDS.start, 48)[0])


def _corrupt_png() -> bytes:
    raw = bytearray(_scene_png())
    raw[60:400] = bytes(340)  # zeroed image data: the chunk CRC and the deflate stream break
    return bytes(raw)


def _palette_with_transparency() -> bytes:
    image = Image.new("P", (40, 30), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 255] * 254)
    image.paste(0, (0, 0, 20, 30))
    return encode(image, transparency=0)


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (40, 30), c) for c in ("red", "green", "blue")]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees
    return encode(Image.new("RGB", (40, 20), "white"), "JPEG", exif=exif.tobytes())


def _sixteen_bit() -> bytes:
    return encode(Image.fromarray((np.arange(40 * 30).reshape(30, 40) * 50).astype(np.uint16)))


# (kind, file name, bytes, outcome, fragment): "error" refuses it; "note" converts it and says how.
IMAGES = [
    ("corrupt", "corrupt.png", _corrupt_png(), "error", "corrupt.png is not a readable image: the file is damaged"),
    ("truncated", "cut.png", _scene_png()[:300], "error", "cut.png is not a readable image: the file is cut short."),
    ("empty", "empty.png", b"", "error", "empty.png is empty."),
    ("1 x 1 px", "dot.png", encode(Image.new("RGB", (1, 1), "red")), "note", "it is only 1 x 1 px"),
    ("over 40 MP", "huge.png", encode(Image.new("1", (8000, 5100))), "error",
     "huge.png is 8000 x 5100 = 41 megapixels; the limit is 40."),
    ("16-bit", "gray16.png", _sixteen_bit(), "note", "values are stretched to 8-bit grey"),
    ("CMYK", "cmyk.jpg", encode(Image.new("CMYK", (40, 30), (0, 255, 0, 0)), "JPEG"), "note",
     "its CMYK colours are converted to RGB"),
    ("palette with transparency", "palette.png", _palette_with_transparency(), "note",
     "transparent pixels are shown on white"),
    ("animated GIF", "anim.gif", _animated_gif(), "note", "the first of its 3 frames is used"),
    ("EXIF-rotated", "phone.jpg", _exif_rotated(), "note", "it is turned upright as its EXIF orientation says"),
    ("text file named .png", "notes.png", b"Shopping list: milk, eggs.\n", "error",
     "notes.png is not a readable image: its contents are not in an image format this app reads."),
]


@pytest.mark.parametrize("kind,name,raw,outcome,fragment", IMAGES, ids=[c[0] for c in IMAGES])
def test_image_library_sentence(kind, name, raw, outcome, fragment):
    """data.load_image refuses with one sentence, or converts to RGB and describe_conversion says how."""
    if outcome == "error":
        with pytest.raises(data.ImageError) as err:
            data.load_image(raw, name)
        assert fragment in str(err.value) and one_sentence(str(err.value))
    else:
        image = data.load_image(raw, name)
        assert image.mode == "RGB"
        note = data.describe_conversion(raw, name)
        assert fragment in note and one_sentence(note)


def test_image_conversions_are_right():
    """What the notes promise: the GIF's first frame, the EXIF turn, white behind transparency."""
    assert data.load_image(_animated_gif()).getpixel((0, 0)) == (255, 0, 0)
    assert data.load_image(_exif_rotated()).size == (20, 40)
    palette = data.load_image(_palette_with_transparency())
    assert palette.getpixel((0, 0)) == (255, 255, 255) and palette.getpixel((30, 0)) == (255, 0, 0)


def attention_maps_shown(at) -> bool:
    """Distance and entropy charts, and the maps (drawn by the browser-side explorer by default)."""
    return len(at.get("plotly_chart")) == 2 and any(e.key == "att_explorer" for e in at.get("bidi_component"))


def test_attention_page_images_keep_the_session():
    at = run_page("pages/attention.py")
    at.selectbox(key="att_model_b").set_value("tiny-rope_axial_ape").run()
    at.slider(key="att_layer").set_value(0).run()
    at.number_input(key="att_qx").set_value(1).run()
    at.radio(key="att_source").set_value("upload").run()
    kept = {"att_model_a": "tiny-ape", "att_model_b": "tiny-rope_axial_ape", "att_layer": 0, "att_qx": 1,
            "att_source": "upload"}
    model_b = models.load_model("tiny-rope_axial_ape")
    for kind, name, raw, outcome, fragment in IMAGES:
        at.file_uploader(key="att_upload").upload(name, raw).run()
        if outcome == "error":
            shows_one_error(at, fragment, kind)
            assert len(at.get("plotly_chart")) == 0, kind
        else:
            assert not at.exception and not at.error, (kind, at.exception, [e.value for e in at.error])
            notes = [i.value for i in at.info]
            assert len(notes) == 1 and fragment in notes[0] and one_sentence(notes[0]), (kind, notes)
            assert attention_maps_shown(at), kind
            # The maps are drawn on the converted upload, and the distance curve is model B's forward on it.
            pixels = explorer_pixels(at)
            np.testing.assert_array_equal(pixels, data.input_image("upload", name, 32, raw), err_msg=kind)
            np.testing.assert_allclose(drawn_mean_distance(at, model_b.spec.display), mean_distance(model_b, pixels),
                                       rtol=0, atol=1e-5, err_msg=kind)
        assert {k: at.session_state[k] for k in kept} == kept, kind
    at.radio(key="att_source").set_value("sample scene").run()
    assert not at.exception and not at.error and attention_maps_shown(at)


# ---------------------------------------------------------------- checkpoints

AXIAL = "vit_small_patch16_rope_224"
MIXED = "vit_small_patch16_rope_mixed_224"


class Payload:
    """An arbitrary object: torch.load(weights_only=True) must refuse to unpickle it."""


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Bad checkpoint files, each with the architecture the user picks and the sentence expected."""
    import timm

    root = tmp_path_factory.mktemp("checkpoints")
    axial = {k: v.half() for k, v in timm.create_model(AXIAL, pretrained=False).state_dict().items()}
    mixed = {k: v.half() for k, v in timm.create_model(MIXED, pretrained=False).state_dict().items()}
    cases = []

    def add(kind, name, arch, fragment, write):
        if write is not None:
            write(root / name)
        cases.append((kind, str(root / name), arch, fragment))

    add("wrong keys", "keys.safetensors", AXIAL, "does not match the architecture: keys 1 missing (first: blocks.0.attn.qkv.weight) and 1 unexpected (first: blocks.0.attn.mystery)",
        lambda p: save_file({**{k: v for k, v in axial.items() if k != "blocks.0.attn.qkv.weight"},
                             "blocks.0.attn.mystery": torch.zeros(1)}, str(p)))
    # The RoPE kind's wording belongs to the family registry (issue 11): here only one sentence naming the file.
    add("wrong RoPE kind (RoPE-Mixed weights, RoPE-Axial architecture)", "mixed.safetensors", AXIAL,
        "mixed.safetensors", lambda p: save_file(mixed, str(p)))
    add("wrong RoPE kind (RoPE-Axial weights, RoPE-Mixed architecture)", "axial.safetensors", MIXED,
        "axial.safetensors", lambda p: save_file(axial, str(p)))
    add("wrong shapes", "shapes.safetensors", AXIAL,
        "cls_token has shape (1, 1, 5), the model expects (1, 1, 384)",
        lambda p: save_file({**axial, "cls_token": torch.zeros(1, 1, 5)}, str(p)))
    add("a pickled object", "object.pth", AXIAL, "object.pth holds Python objects besides tensors; it is refused",
        lambda p: torch.save({"model": {"x": torch.zeros(1)}, "obj": Payload()}, p))
    add("truncated safetensors", "cut.safetensors", AXIAL,
        "Could not read checkpoint cut.safetensors: it is not a valid .safetensors weights file",
        lambda p: p.write_bytes((root / "keys.safetensors").read_bytes()[:5000]))
    add("missing file", "missing.pt", AXIAL, "missing.pt does not exist.", None)
    return cases


def test_checkpoint_for_an_unknown_architecture(checkpoints):
    """The Home page offers a list; the library call says which names are valid."""
    from rope_viz import models

    with pytest.raises(models.ModelLoadError, match="Unknown architecture 'vit_imaginary'; use a timm model name"):
        models.register_local(checkpoints[0][1], "vit_imaginary")


def test_home_page_checkpoints_keep_the_model_list(checkpoints):
    at = run_page("pages/home.py")
    listed = list(at.dataframe[0].value["model"])
    for kind, path, arch, fragment in checkpoints:
        at.text_input[0].input(path)
        at.selectbox[0].set_value(arch)
        at.button[0].click().run()
        shows_one_error(at, fragment, kind)
        assert list(at.dataframe[0].value["model"]) == listed, kind  # nothing added, nothing lost
        assert at.text_input[0].value == path, kind  # what the user typed stays for a fix


# ---------------------------------------------------------------- resolutions

def test_attention_resolutions_keep_the_session(monkeypatch):
    at = run_page("pages/attention.py")
    at.selectbox(key="att_view").set_value("mean").run()
    for value in (0, -8):  # below the widget's minimum: Streamlit keeps the last valid value
        at.number_input(key="att_res").set_value(value).run()
        assert not at.exception and not at.error and at.number_input(key="att_res").value == 32, value
    at.number_input(key="att_res").set_value(36).run()
    shows_one_error(at, "Resolution 36 px is not a multiple of the patch size (8 px).", "not a patch multiple")
    # Too large: the widget's own maximum, on a machine with 512 MiB free.
    monkeypatch.setattr(memory, "available_memory", lambda device: 512 << 20)
    at.number_input(key="att_res").set_value(2048).run()
    shows_one_error(at, "A capture at 2048 x 2048 px needs about 608.0 MiB, but only 512.0 MiB is free; choose a lower resolution.", "too large")
    at.number_input(key="att_res").set_value(40).run()
    assert not at.exception and not at.error and attention_maps_shown(at)
    pixels = explorer_pixels(at)  # the sample scene at the last valid size, 5 x 5 patches
    tiny_ape = models.load_model("tiny-ape")
    assert pixels.shape == (40, 40, 3)
    np.testing.assert_allclose(drawn_mean_distance(at, tiny_ape.spec.display), mean_distance(tiny_ape, pixels),
                               rtol=0, atol=1e-5)
    assert at.session_state["att_view"] == "mean"


# ---------------------------------------------------------------- ImageFolder sets

def _folders(root: Path) -> list[tuple[str, str, str]]:
    """(kind, path, sentence fragment) of bad ImageFolder sets for models trained on the scenes."""
    (root / "empty").mkdir()
    (root / "no_images" / "circle_dot_left").mkdir(parents=True)
    (root / "no_images" / "circle_dot_left" / "README.txt").write_text("not an image")
    (root / "unreadable" / "circle_dot_left").mkdir(parents=True)
    (root / "unreadable" / "circle_dot_left" / "broken.png").write_bytes(b"not a png")
    (root / "no_match" / "cats").mkdir(parents=True)
    (root / "no_match" / "cats" / "tabby.png").write_bytes(encode(Image.new("RGB", (8, 8))))
    return [
        ("missing folder", str(root / "nowhere"), "is neither 'shapes', 'shapes:canvas' nor an existing folder."),
        ("empty", str(root / "empty"), "has no class folders (expected ImageFolder layout"),
        ("non-image files only", str(root / "no_images"), "that match tiny-ape contain no images."),
        ("unreadable file", str(root / "unreadable"),
         "circle_dot_left/broken.png is not a readable image: its contents are not in an image format this app "
         "reads (in "),
        ("class folders that match no class", str(root / "no_match"),
         "None of the 1 class folders in"),
    ]


def test_resolution_page_bad_sets_keep_finished_cells(tmp_path, monkeypatch):
    from rope_viz.app import cached

    at = run_page("pages/resolution.py")
    at.multiselect(key="res_models").set_value(["tiny-ape"]).run()
    at.multiselect(key="res_list").set_value([32]).run()
    at.number_input(key="res_limit").set_value(10).run()
    at.button(key="res_run").click().run()
    assert not at.exception and not at.error and len(at.dataframe[0].value) == 1
    row = sweep.evaluate_cell(models.load_model("tiny-ape"), 32, "shapes", 10)  # the same cell, computed here
    assert at.dataframe[0].value["top1"].iloc[0] == row["top1"] and at.dataframe[0].value["n"].iloc[0] == 10
    finished = dict(cached.get_sweep_cells())
    at.selectbox(key="res_data").set_value("image folder").run()
    for kind, path, fragment in _folders(tmp_path):
        at.text_input(key="res_folder").input(path).run()
        at.button(key="res_run").click().run()
        shows_one_error(at, fragment, kind)
        assert cached.get_sweep_cells() == finished and at.session_state["res_models"] == ["tiny-ape"], kind
    at.selectbox(key="res_data").set_value("shapes:zoom").run()
    assert at.button(key="res_run").label == "All cells computed" and len(at.dataframe[0].value) == 1
    # Too large for this machine: 64 MiB free.
    monkeypatch.setattr(memory, "available_memory", lambda device: 64 << 20)
    at.multiselect(key="res_list").set_value([32, 512]).run()
    at.button(key="res_run").click().run()
    shows_one_error(at, "512 px needs about", "too large")
    assert "only 64.0 MiB is free on cpu; lower the resolution or batch." in at.error[0].value
    assert cached.get_sweep_cells() == finished and len(at.dataframe[0].value) == 1


# ---------------------------------------------------------------- theory settings

THEORY = [
    ("head_dim not a multiple of 4", "freq_head_dim", 62, "head_dim must be a positive multiple of 4"),
    ("head_dim 0", "freq_head_dim", 0, "head_dim must be a positive multiple of 4 (2D RoPE splits it into x and y pairs), got 0."),
    ("theta 0", "freq_theta_axial", 0.0, "theta must be a positive finite number, got 0.0."),
    ("negative theta", "freq_theta_mixed", -3.0, "theta must be a positive finite number, got -3.0."),
]


def test_frequencies_theory_settings_keep_the_session():
    at = run_page("pages/frequencies.py")
    at.selectbox(key="freq_source").set_value("Theory: RoPE-Axial vs RoPE-Mixed").run()
    at.number_input(key="freq_heads").set_value(3).run()
    for kind, key, value, fragment in THEORY:
        before = at.number_input(key=key).value
        at.number_input(key=key).set_value(value).run()
        shows_one_error(at, fragment, kind)
        assert at.session_state["freq_heads"] == 3, kind
        at.number_input(key=key).set_value(before).run()
        assert not at.exception and not at.error and len(at.get("plotly_chart")) == 5, kind  # + position methods
    # Back at the defaults, the axial panel draws the hand-derived ladder f_i = 100^(-4i/64).
    np.testing.assert_allclose(drawn_vectors(at, 0), axial_theory(64, 100.0), rtol=1e-6, atol=0)


# ---------------------------------------------------------------- command line

CLI = [  # (kind, arguments, sentence fragment on stderr)
    ("unknown command", ["bogus"], "Argument command: invalid choice: 'bogus'"),
    ("missing argument", ["sweep", "--models", "tiny-ape"], "The following arguments are required: --resolutions"),
    ("not a number", ["sweep", "--models", "tiny-ape", "--resolutions", "abc"], "invalid int value: 'abc'"),
    ("unknown choice", ["sweep", "--models", "tiny-ape", "--resolutions", "32", "--position", "sideways"],
     "Argument --position: invalid choice: 'sideways'"),
    ("unknown model", ["sweep", "--models", "nope", "--resolutions", "32"], "Unknown model 'nope'; valid names: tiny-ape"),
    ("resolution 0", ["sweep", "--models", "tiny-ape", "--resolutions", "0"], "Resolution 0 px is not a positive size."),
    ("negative resolution", ["sweep", "--models", "tiny-ape", "--resolutions", "32", "-8"],
     "Resolution -8 px is not a positive size."),
    ("resolution too large", ["sweep", "--models", "tiny-ape", "--resolutions", "100000", "--data", "shapes:canvas"],
     "100000 px needs about"),
    ("zero images", ["sweep", "--models", "tiny-ape", "--resolutions", "32", "--limit", "0"],
     "The number of images per cell (limit) must be a whole number of at least 1, got 0."),
    ("zero batch", ["sweep", "--models", "tiny-ape", "--resolutions", "32", "--batch-size", "0"],
     "The batch size must be a whole number of at least 1, got 0."),
    ("unknown scene mode", ["sweep", "--models", "tiny-ape", "--resolutions", "32", "--data", "shapes:weird"],
     "Unknown scene mode in 'shapes:weird'"),
    ("eval of an unknown model", ["eval", "--model", "nope"], "Unknown model 'nope'"),
    ("download of a bundled model", ["download", "tiny-ape"], "tiny-ape is a bundled model; only hub models"),
]


@pytest.mark.parametrize("kind,args,fragment", CLI, ids=[c[0] for c in CLI])
def test_cli_bad_arguments(kind, args, fragment, capsys):
    """In process, through the CLI's main(); test_cli.py's eval test checks a real process's status 2."""
    try:
        status = cli_main(args)
    except SystemExit as stop:  # argparse exits itself
        status = stop.code
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2 and err.startswith("error: ") and fragment in err and one_sentence(err), (status, err)


def test_cli_bad_image_folders(tmp_path, capsys):
    for kind, path, fragment in _folders(tmp_path):
        status = cli_main(["sweep", "--models", "tiny-ape", "--resolutions", "32", "--data", path, "--limit", "4"])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert status == 2 and fragment in err and one_sentence(err), (kind, err)

