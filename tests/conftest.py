"""Shared test fixtures: a loopback Streamlit server, small timm models, offline hub."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch


ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "tests" / "screenshots"
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def streamlit_url():
    """`streamlit run app.py` on a free loopback port for the whole session."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("streamlit did not start within 60 s:\n" + proc.stdout.read().decode(errors="replace"))
    yield url
    proc.terminate()
    proc.wait(timeout=20)


TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10)


def write_bundled(directory: Path, pos: str, name: str | None = None, seed: int = 0, class_names=None):
    """A tiny bundled model (card + safetensors) as the training script will write them."""
    import json

    import torch
    from safetensors.torch import save_file

    from rope_viz import models

    torch.manual_seed(seed)
    from rope_viz import data

    class_names = list(class_names or data.CLASS_NAMES)  # the scenes' classes, so sweeps can run on them
    arch = models.eva_architecture(pos, **{**TINY, "num_classes": len(class_names)})
    module = models.build_eva(arch).eval()
    name = name or f"tiny-{pos}"
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(directory / f"{name}.safetensors"))
    card = dict(name=name, label=f"tiny {models.pos_label(pos)}", pos=pos, train_res=32, architecture=arch,
                class_names=class_names, mean=[0.5] * 3, std=[0.25] * 3)
    (directory / f"{name}.json").write_text(json.dumps(card))
    return module


@pytest.fixture(scope="session")
def bundled_dir(tmp_path_factory):
    """A models folder with one tiny bundled model per position kind."""
    from rope_viz import models

    directory = tmp_path_factory.mktemp("bundled")
    for pos in models.POS_KINDS:
        write_bundled(directory, pos)
    return directory
