"""Sweeps under torchrun: 2 gloo processes on loopback write the same CSV as one process."""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys

import pytest

from conftest import ROOT, free_port, write_bundled
from rope_viz.measure.distributed import Shard

pytestmark = pytest.mark.slow  # whole-pipeline runs: `make test`, not `make test-fast`

MODELS = ["d-ape", "d-rope_mixed"]


@pytest.fixture
def sweep_env(tmp_path):
    for i, pos in enumerate(("ape", "rope_mixed")):
        write_bundled(tmp_path / "models", pos, name=f"d-{pos}", seed=i)
    return {**os.environ, "PYTHONPATH": str(ROOT), "ROPE_VIZ_MODELS_DIR": str(tmp_path / "models"),
            "ROPE_VIZ_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


def sweep_args(out, data="shapes:canvas"):
    # 13 images: the two blocks differ in size (6 and 7), so uneven shards are covered.
    return ["-m", "rope_viz", "sweep", "--models", *MODELS, "--resolutions", "32", "48", "--data", data,
            "--limit", "13", "--batch-size", "4", "--device", "cpu", "--out", str(out)]


def rows_without_timing(path):
    """The CSV's rows minus 'seconds' (wall time is the one column that legitimately differs)."""
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    for row in rows:
        row.pop("seconds")
    return rows


def test_shard_blocks_cover_every_item_once():
    for n in (0, 1, 5, 13):
        for world in (1, 2, 3):
            blocks = [Shard(r, world).take(range(n)) for r in range(world)]
            assert [i for b in blocks for i in b] == list(range(n))
            assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_two_process_gloo_torchrun_sweep_equals_one_process(sweep_env, tmp_path):
    single, multi = tmp_path / "single.csv", tmp_path / "multi.csv"
    subprocess.run([sys.executable, *sweep_args(single)], env=sweep_env, cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
         "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", *sweep_args(multi)[1:]],
        env={**sweep_env, "MASTER_ADDR": "127.0.0.1"}, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote 4 rows") == 1  # only rank 0 writes and prints
    expected = rows_without_timing(single)
    assert [(r["model"], r["resolution"], r["n"]) for r in expected] == [
        (m, r, "13") for m in MODELS for r in ("32", "48")]
    assert rows_without_timing(multi) == expected
    assert multi.read_text().splitlines()[0] == single.read_text().splitlines()[0]
