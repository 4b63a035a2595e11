"""The command line, run as a user runs it."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, env_extra=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "rope_viz", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_info_lists_models(bundled_dir):
    out = run_cli("info", env_extra={"ROPE_VIZ_MODELS_DIR": str(bundled_dir)})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("device: ")
    assert lines[2].startswith("tiny-ape") and "bundled" in lines[2] and lines[2].endswith("here")
    assert sum("naver_in1k" in line for line in lines) == 12


def test_download_offline_is_one_clear_error(tmp_path):
    out = run_cli("download", "vit_base_patch16_rope_224.naver_in1k",
                  env_extra={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path)})
    assert out.returncode == 1
    assert out.stderr.startswith("error: Weights for vit_base_patch16_rope_224.naver_in1k are not downloaded")
    assert "Traceback" not in out.stderr
