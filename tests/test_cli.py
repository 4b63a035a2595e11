"""The command line, run as a user runs it."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

pytestmark = pytest.mark.slow  # whole-pipeline runs: `make test`, not `make test-fast`

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, env_extra=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "rope_viz", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_info_lists_models(bundled_dir, tmp_path):
    torch.manual_seed(0)
    module = timm.create_model("vit_tiny_patch16_dinov3_qkvb", pretrained=False, num_classes=0)
    checkpoint = tmp_path / "dino.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(checkpoint))
    out = run_cli("info", "--add", f"{checkpoint}@vit_tiny_patch16_dinov3_qkvb",
                  env_extra={"ROPE_VIZ_MODELS_DIR": str(bundled_dir)})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("device: ")
    assert lines[1].split() == ["model", "source", "family", "patch", "res", "prefix", "tokens", "classes",
                                "mean/std", "from", "weights"]
    assert lines[2].startswith("tiny-ape") and "bundled" in lines[2] and lines[2].endswith("here")
    assert "APE only" in lines[2] and "model card" in lines[2]
    assert sum("naver_in1k" in line for line in lines) == 12
    dino = next(line for line in lines if line.startswith("vit_small_patch16_dinov3.lvd1689m")).split()
    assert dino[1:10] == ["hub", "DINOv3", "16", "256", "CLS", "+", "4", "registers", "none"]
    assert "timm pretrained_cfg" in " ".join(dino)
    local = next(line for line in lines if line.startswith("local:dino.safetensors@"))
    assert "local" in local and "DINOv3" in local and "CLS + 4 registers" in local and local.endswith("here")


def test_download_offline_is_one_clear_error(tmp_path):
    out = run_cli("download", "vit_base_patch16_rope_224.naver_in1k",
                  env_extra={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path)})
    assert out.returncode == 2
    assert out.stderr.startswith("error: Weights for vit_base_patch16_rope_224.naver_in1k are not downloaded")
    assert "Traceback" not in out.stderr


def test_sweep_cli_writes_the_pages_numbers(bundled_dir, tmp_path):
    """The CLI and the Resolution page run the same sweep: same cells, same counts."""
    from streamlit.testing.v1 import AppTest

    env = {"ROPE_VIZ_MODELS_DIR": str(bundled_dir), "ROPE_VIZ_CACHE": str(tmp_path / "cache")}
    out = run_cli("sweep", "--models", "tiny-ape", "tiny-rope_mixed", "--resolutions", "32", "44",
                  "--data", "shapes:canvas", "--limit", "24", "--out", str(tmp_path / "r.csv"), env_extra=env)
    assert out.returncode == 0, out.stderr
    assert "44 px is not a multiple of tiny-ape's patch size; evaluated at 48 px" in out.stderr
    import csv

    written = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert {(row["method"], row["position"]) for row in written} == {("native", "native")}  # the default method
    cli = [{k: row[k] for k in ("model", "resolution", "mode", "top1", "top5", "n")} for row in written]
    assert [(r["model"], r["resolution"]) for r in cli] == [
        ("tiny-ape", "32"), ("tiny-ape", "48"), ("tiny-rope_mixed", "32"), ("tiny-rope_mixed", "48")]

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from rope_viz.app import cached

        cached.get_available_models.clear()
        cached.get_sweep_cells().clear()
        at = AppTest.from_file("../app.py", default_timeout=120)
        at.run()
        at.switch_page("pages/resolution.py").run()
        at.multiselect(key="res_models").set_value(["tiny-ape", "tiny-rope_mixed"]).run()
        at.multiselect(key="res_list").set_value([32, 48]).run()
        at.selectbox(key="res_data").set_value("shapes:canvas").run()
        at.number_input(key="res_limit").set_value(24).run()
        at.button(key="res_run").click().run()
        assert not at.exception
        table = at.dataframe[0].value
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    page = [{"model": m, "resolution": str(r), "mode": mode, "top1": str(t1), "top5": str(t5), "n": str(n)}
            for m, r, mode, t1, t5, n in zip(table["model"], table["resolution"], table["mode"], table["top1"],
                                              table["top5"], table["n"])]
    assert page == cli


def test_eval_cli_prints_the_card_table(bundled_dir, tmp_path):
    env = {"ROPE_VIZ_MODELS_DIR": str(bundled_dir), "ROPE_VIZ_CACHE": str(tmp_path / "cache")}
    out = run_cli("eval", "--model", "tiny-rope_axial", "--resolutions", "32", "48", "--limit", "20", env_extra=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-4] == "top-1 % on 20 held-out scenes" and lines[-3].split() == ["mode", "32", "px", "48", "px"]
    assert lines[-2].startswith("zoom") and lines[-1].startswith("canvas")
    bad = run_cli("eval", "--model", "no-such-model", env_extra=env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
