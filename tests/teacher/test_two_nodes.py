"""``popdistill teacher`` on a two-node Ray cluster (two raylets on this machine, one CPU each,
``ray.cluster_utils.Cluster``) writes the store that one node writes, row for row and mask for
mask. The two VideoPCA actors need 0.9 CPU each, so each runs on a node of its own; both write
to a path that both nodes see, as a shared file system or bucket would be on a real cluster.

The cluster runs in a child process: this one is already connected to the suite's Ray."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from tests.teacher.test_pipeline import _square_video

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TWO_NODES = textwrap.dedent("""
    import sys

    import ray
    from ray.cluster_utils import Cluster

    from popdistill.cli import main

    corpus, out = sys.argv[1], sys.argv[2]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        ray.init(address=cluster.address)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        rc = main(["teacher", "--data", corpus, "--out", out, "--actors", "2", "--chunk-frames", "8",
                   "--size", "64", "--window", "8", "--select-strata", "2",
                   "--set", "videopca.min_window=4", "--set", "actor_cpus=0.9",
                   "--address", cluster.address])
        # each actor needed 0.9 of a node's one CPU: they ran on both nodes
        print("NODES", len({n["NodeID"] for n in ray.nodes() if n["Alive"]}))
    finally:
        ray.shutdown()
        cluster.shutdown()
    sys.exit(rc)
""")


def _rows(store: Path) -> list[dict]:
    files = sorted(str(p) for p in store.rglob("*.parquet"))
    rows = pads.dataset(files, format="parquet").to_table().to_pylist()
    return sorted(rows, key=lambda r: (r["video"], r["frame"]))


def test_a_two_node_cluster_writes_the_store_that_one_node_writes(ray_session, tmp_path):
    import numpy as np

    from popdistill.cli import main

    rng = np.random.default_rng(3)
    corpus = tmp_path / "corpus"
    for i in range(4):
        _square_video(corpus, f"seq{i}", frames=12, size=64, rng=rng)
    args = ["teacher", "--data", str(corpus), "--actors", "2", "--chunk-frames", "8", "--size", "64",
            "--window", "8", "--select-strata", "2", "--set", "videopca.min_window=4"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    done = subprocess.run([sys.executable, "-c", TWO_NODES, str(corpus), str(tmp_path / "two")],
                          capture_output=True, text=True, timeout=500, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "NODES 2" in done.stdout
    one, two = _rows(tmp_path / "one" / "teacher" / "store"), _rows(tmp_path / "two" / "teacher" / "store")
    assert len(one) == 48 and len(two) == 48
    assert two == one  # every column: image bytes, masks, scores, edge densities
    sel_one = _rows(tmp_path / "one" / "teacher" / "selected")
    assert [(r["video"], r["frame"]) for r in _rows(tmp_path / "two" / "teacher" / "selected")] == \
        [(r["video"], r["frame"]) for r in sel_one]
