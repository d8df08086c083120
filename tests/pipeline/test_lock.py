"""One writer per run directory (popdistill.pipeline.lock)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from popdistill.pipeline.lock import LOCK_FILE, RunDirBusy, writer_lock

ROOT = Path(__file__).resolve().parents[2]
HOLD = ("import sys, time\n"
        "from popdistill.pipeline.lock import writer_lock\n"
        "with writer_lock(sys.argv[1], log=print):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n")


def _holder(run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.timeout(60)
def test_a_second_writer_is_refused_at_once_and_a_dead_holders_lock_does_not_block(tmp_path):
    run_dir = tmp_path / "run"
    proc = _holder(run_dir)
    try:
        t0 = time.perf_counter()
        with pytest.raises(RunDirBusy, match=rf"being written by pid {proc.pid} on \S+"):
            with writer_lock(str(run_dir)):
                pass
        assert time.perf_counter() - t0 < 2
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # killed: no clean-up ran
        proc.wait(10)
    assert (run_dir / LOCK_FILE).exists()  # the stale file stays, and does not block
    with writer_lock(str(run_dir)):
        assert str(os.getpid()) in (run_dir / LOCK_FILE).read_text()


def test_the_lock_is_reentrant_in_one_process_and_released_after(tmp_path):
    run_dir = str(tmp_path / "run")
    with writer_lock(run_dir), writer_lock(run_dir):
        pass
    proc = _holder(Path(run_dir))  # another process gets it once this one let go
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


def test_a_bucket_is_not_locked_but_says_so(tmp_path):
    said = []
    with writer_lock("mock:///bucket/run", log=said.append):
        pass
    assert said and "no writer lock" in said[0]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", [
    ["run", str(ROOT / "configs" / "quickstart.yaml"), "--out", "{run}"],
    ["teacher", "--data", "{data}", "--out", "{run}"],
    ["train", "--store", "{data}", "--out", "{run}", "--students", "unet_tiny"],
])
def test_the_commands_refuse_a_run_directory_in_use(tmp_path, command):
    run_dir = tmp_path / "run"
    (tmp_path / "data").mkdir()
    proc = _holder(run_dir)
    try:
        args = [a.format(run=run_dir, data=tmp_path / "data") for a in command]
        env = {**os.environ, "RAY_ADDRESS": "", "RAY_USAGE_STATS_ENABLED": "0"}
        done = subprocess.run([sys.executable, "-m", "popdistill", *args], capture_output=True,
                              text=True, cwd=ROOT, env=env, timeout=90)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"is being written by pid {proc.pid}" in done.stderr
    assert not (run_dir / "manifest.json").exists()
