"""``popdistill ui``: the MLflow UI on a run directory's tracking store, bound to 127.0.0.1."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from popdistill.errors import UserError

HELP = "open the MLflow UI on a run directory's tracking store (http://127.0.0.1:PORT)"
DESCRIPTION = """\
Start the MLflow UI on RUN_DIR/mlflow.db (the default tracking store of a pipeline run;
artifacts are read from RUN_DIR/mlartifacts). The server listens on 127.0.0.1 only; stop it
with Ctrl-C. On a cluster the tracking server runs on the head node instead: see
docs/cluster.md.

With --screenshot FILE.png the UI is started, the run tree of the pipeline's experiment is
rendered by headless Chromium into FILE.png (expanded: generations, students, EvalSeg-Net),
a student's mask grid into FILE-masks.png, and the server is stopped (for docs and reports).

Examples:
  popdistill ui runs/quickstart --port 5000
  popdistill ui runs/quickstart --screenshot docs/mlflow_ui.png
"""

HOST = "127.0.0.1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory holding mlflow.db")
    parser.add_argument("--port", type=int, default=5000, help="port to listen on (5000)")
    parser.add_argument("--screenshot", metavar="PNG",
                        help="render the run tree to this PNG with headless Chromium, then stop")
    parser.add_argument("--browser", default="chromium",
                        help="Chromium executable for --screenshot (chromium)")
    parser.add_argument("--size", default="1600,900", help="screenshot window W,H (1600,900)")


def ui_command(run_dir: str | os.PathLike, port: int) -> list[str]:
    """The ``mlflow ui`` command line for ``run_dir`` (raises UserError without mlflow.db)."""
    from popdistill.tracking.client import default_tracking_uri

    run_dir = Path(run_dir)
    if not (run_dir / "mlflow.db").is_file():
        raise UserError(f"{run_dir}: no mlflow.db here (not a run directory with tracking on?)")
    return [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", default_tracking_uri(run_dir),
        "--artifacts-destination", str((run_dir / "mlartifacts").resolve()),
        "--host", HOST, "--port", str(port), "--workers", "1",
    ]  # fmt: skip


def _check_port(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            s.bind((HOST, port))
        except OSError as exc:
            raise UserError(f"--port {port}: {HOST}:{port} is in use ({exc.strerror})") from exc


class _Stop(Exception):
    pass


def _raise_stop(signum, frame) -> None:
    raise _Stop


def _wait_until_serving(port: int, proc: subprocess.Popen, seconds: float = 180.0) -> None:
    import time
    import urllib.request

    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise UserError(f"the MLflow UI exited with status {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise UserError(f"the MLflow UI did not answer on {HOST}:{port} within {seconds:.0f} s")


def main(args: argparse.Namespace) -> int:
    cmd = ui_command(args.run_dir, args.port)
    _check_port(args.port)
    if not args.screenshot:
        print(f"MLflow UI for {args.run_dir}: http://{HOST}:{args.port}/  (Ctrl-C to stop)",
              flush=True)
    # Own process group, so stopping reaches the server's worker processes too.
    proc = subprocess.Popen(cmd, start_new_session=True,
                            stdout=subprocess.DEVNULL if args.screenshot else None,
                            stderr=subprocess.DEVNULL if args.screenshot else None)
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        if args.screenshot:
            from popdistill.tracking.screenshot import capture

            _wait_until_serving(args.port, proc)
            shots = capture(args.run_dir, f"http://{HOST}:{args.port}", args.screenshot,
                            args.browser, args.size)
            print("screenshots: " + ", ".join(str(p) for p in shots))
            return 0
        return proc.wait()
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
