"""cluster.yaml passes Ray's own autoscaler config checks (schema + prepare), no cloud calls."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def _validate(config: dict) -> dict:
    """What `ray up` does before it talks to the cloud: fill defaults, then validate."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_is_valid(raw):
    prepared = _validate(raw)
    assert prepared["provider"]["type"] == "aws" and prepared["provider"]["region"]
    assert prepared["auth"]["ssh_user"] == "ubuntu"


def test_node_types(raw):
    types = raw["available_node_types"]
    head = types[raw["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # no tasks on the head
    assert head["node_config"]["InstanceType"].startswith("m5.")

    teacher, student = types["cpu_teacher"], types["gpu_student"]
    assert teacher["min_workers"] == 0 and teacher["max_workers"] > 0
    assert "GPU" not in teacher["resources"] and teacher["resources"]["CPU"] >= 8
    assert student["min_workers"] == 0 and student["max_workers"] >= 5  # a population of 5
    assert student["resources"]["GPU"] == 1
    assert student["node_config"]["InstanceType"] == "g5.xlarge"
    workers = [t for name, t in types.items() if name != raw["head_node_type"]]
    assert sum(t["max_workers"] for t in workers) <= raw["max_workers"]
    for t in workers:  # bucket access through an instance profile, not keys
        assert t["node_config"]["IamInstanceProfile"] == {"Name": "popdistill-worker"}


def test_setup_and_start_commands(raw):
    assert raw["file_mounts"] == {"~/popdistill": "."}
    assert any("pip install" in c and "~/popdistill" in c for c in raw["setup_commands"])
    head = " ".join(raw["head_start_ray_commands"])
    assert "ray start --head" in head and "--dashboard-host=0.0.0.0" in head
    assert "mlflow server" in head and "--artifacts-destination s3://" in head
    assert "MLFLOW_TRACKING_URI=http://" in head
    worker = " ".join(raw["worker_start_ray_commands"])
    assert "ray start --address=$RAY_HEAD_IP:6379" in worker
    assert "MLFLOW_TRACKING_URI=http://$RAY_HEAD_IP:5000" in worker


def test_docs_name_the_real_node_types(raw):
    doc = (ROOT / "docs" / "cluster.md").read_text()
    for name in raw["available_node_types"]:
        assert f"`{name}`" in doc
    for cmd in ("ray up cluster.yaml", "ray job submit", "--working-dir .", "ray down cluster.yaml"):
        assert cmd in doc


@pytest.mark.parametrize(
    "breakage, error, match",
    [
        (lambda c: c.update(workers=3), jsonschema.ValidationError, "'workers' was unexpected"),
        (lambda c: c["available_node_types"]["gpu_student"]["resources"].update(GPU="1"),
         jsonschema.ValidationError, "is not of type 'integer'"),
        (lambda c: c["available_node_types"]["gpu_student"].pop("node_config"),
         jsonschema.ValidationError, "'node_config' is a required property"),
        (lambda c: c.update(head_node_type="nope"), ValueError, "head_node_type"),
        (lambda c: c["available_node_types"]["cpu_teacher"].update(min_workers=20), ValueError,
         "sum of `min_workers`"),
    ],
    ids=["unknown-field", "string-gpu", "no-node-config", "bad-head-type", "min-over-max"],
)
def test_broken_copy_fails(raw, breakage, error, match):
    broken = copy.deepcopy(raw)
    breakage(broken)
    with pytest.raises(error, match=match):
        _validate(broken)
