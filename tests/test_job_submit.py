"""`ray job submit` of the generation loop to a Ray head started for this test alone.

The cluster form of the pipeline: `ray start --head` (own ports and temp dir, so the suite's
own Ray is untouched), `ray job submit --working-dir . -- python jobs/run.py --config FILE`
from the repository root, then the job's status and its run directory are checked. Only this
test's head is stopped (the `--block` process is terminated; never `ray stop`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.pipeline.test_loop import tiny_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command_lines() -> list[list[str]]:
    lines = []
    for d in Path("/proc").iterdir():
        try:
            lines.append((d / "cmdline").read_bytes().decode(errors="replace").split("\0"))
        except OSError:
            continue
    return lines


def _wait_for_dashboard(port: int, head: subprocess.Popen, log: Path, seconds: float) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert head.poll() is None, log.read_text()[-3000:]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"the dashboard did not open port {port}: {log.read_text()[-3000:]}")


@pytest.mark.timeout(900)
def test_ray_job_submit_runs_the_pipeline_on_a_fresh_head(tmp_path):
    cfg = tiny_config(tmp_path / "worlds", tmp_path / "run")
    cfg["generations"] = 1
    cfg["students"] = {"names": ["unet_tiny"]}
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))

    gcs, dash = _free_port(), _free_port()
    # Every Ray node runs a dashboard agent on fixed default ports (52365 ...); the suite's own
    # Ray holds them, so this head's agent needs its own or no job can be submitted to it
    # ("No available agent to submit job"). The head's Ray client server (10001 by default) gets
    # a free port too, so that two suites on one machine do not contend for it.
    agent_ports = [f"--ray-client-server-port={_free_port()}",
                   f"--dashboard-agent-listen-port={_free_port()}",
                   f"--dashboard-agent-grpc-port={_free_port()}",
                   f"--metrics-export-port={_free_port()}",
                   f"--runtime-env-agent-port={_free_port()}"]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    temp = Path("/tmp") / f"ray-job-test-{os.getpid()}"  # short: Ray's socket paths have a limit
    head_log = tmp_path / "head.log"
    with open(head_log, "w") as log:
        head = subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs}",
             f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", "--include-dashboard=true",
             "--num-cpus=2", f"--temp-dir={temp}", "--disable-usage-stats", *agent_ports],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_for_dashboard(dash, head, head_log, 120)
        try:
            submit = subprocess.run(
                [str(BIN / "ray"), "job", "submit", f"--address=http://127.0.0.1:{dash}",
                 "--submission-id", f"popdistill-test-{os.getpid()}", "--working-dir", ".",
                 "--", "python", "jobs/run.py", "--config", str(config)],
                cwd=REPO, capture_output=True, text=True, env=env, timeout=780)
        except subprocess.TimeoutExpired as e:
            out = "".join(x.decode(errors="replace") if isinstance(x, bytes) else x or ""
                          for x in (e.stdout, e.stderr))
            raise AssertionError(f"the job did not finish in 780 s:\n{out[-4000:]}\n--- head log ---\n"
                                 f"{head_log.read_text()[-2000:]}") from e
        out = submit.stdout + submit.stderr
        why = f"{out[-4000:]}\n--- head log ---\n{head_log.read_text()[-2000:]}"
        assert submit.returncode == 0, why
        assert "succeeded" in out.lower(), why
        from ray.job_submission import JobStatus, JobSubmissionClient

        client = JobSubmissionClient(f"http://127.0.0.1:{dash}")
        assert client.get_job_status(f"popdistill-test-{os.getpid()}") == JobStatus.SUCCEEDED
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # this head and its processes only
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)

    deadline = time.time() + 30
    while any(str(temp) in " ".join(p) for p in _command_lines()) and time.time() < deadline:
        time.sleep(1)
    assert not any(str(temp) in " ".join(p) for p in _command_lines()), "the head's processes remain"

    # The job wrote the run: the manifest's steps, the table, the tracking database.
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    steps = json.loads((tmp_path / "run" / "manifest.json").read_text())["steps"]
    assert {"gen-1/teacher", "gen-1/train", "gen-1/evaluate"} <= set(steps)
    assert "gen-1/evalseg" not in steps  # one generation: no next one for EvalSeg-Net to select
    assert "Multi-Net" in out and (tmp_path / "run" / "mlflow.db").is_file()
    names = json.dumps(report["table"])
    assert "unet_tiny" in names and "VideoPCA" in names
