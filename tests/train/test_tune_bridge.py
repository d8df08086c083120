"""The Train -> Tune report bridge, without Ray: a thread-safe ``queue.Queue`` stands in for
the Ray queue, and ``fit`` is a function that calls the callback as the Train controller would."""

from __future__ import annotations

import queue
import threading
import time
from types import SimpleNamespace

import pytest

from popdistill.train.tune_bridge import CHECKPOINT_PATH_KEY, QueueReportCallback, forward_reports


def _fit_reporting(epochs: int, pause: float = 0.0, result="done", error: Exception | None = None):
    """A stand-in for ``TorchTrainer.fit``: calls ``after_report`` per epoch (a checkpoint on
    odd epochs), then returns at once — the moment the real bridge raced."""

    def fit(callbacks):
        (cb,) = callbacks
        assert isinstance(cb, QueueReportCallback)
        for epoch in range(epochs):
            time.sleep(pause)
            ckpt = SimpleNamespace(path=f"/ckpt/{epoch}") if epoch % 2 else None
            cb.after_report(None, [{"epoch": epoch, "rank": 0}, {"epoch": epoch, "rank": 1}], ckpt)
        if error is not None:
            raise error
        return result

    return fit


@pytest.mark.parametrize("pause", [0.0, 0.01])
def test_every_report_arrives_in_order_from_the_calling_thread(pause):
    caller = threading.get_ident()
    seen, threads = [], set()

    def report(item):
        seen.append(item)
        threads.add(threading.get_ident())

    out = forward_reports(_fit_reporting(7, pause), report, queue.Queue(), poll_seconds=0.005)
    assert out == "done"
    assert [s["epoch"] for s in seen] == list(range(7))
    assert all(s["rank"] == 0 for s in seen)  # rank 0's metrics only
    assert [s.get(CHECKPOINT_PATH_KEY) for s in seen] == [
        None if e % 2 == 0 else f"/ckpt/{e}" for e in range(7)]
    assert threads == {caller}  # Tune's report is only ever called from the trial's thread


def test_reports_queued_just_before_fit_returns_are_not_lost():
    # A long poll: fit() finishes (and queues its last reports) while the caller still waits on
    # an empty queue; the drain after the join must deliver them.
    seen = []
    q = queue.Queue()
    forward_reports(_fit_reporting(3), seen.append, q, poll_seconds=0.5)
    assert [s["epoch"] for s in seen] == [0, 1, 2] and q.empty()


def test_an_error_in_fit_is_raised_after_its_reports_are_forwarded():
    seen = []
    with pytest.raises(RuntimeError, match="worker group failed"):
        forward_reports(_fit_reporting(2, error=RuntimeError("worker group failed")), seen.append,
                        queue.Queue(), poll_seconds=0.005)
    assert [s["epoch"] for s in seen] == [0, 1]


def test_a_failing_report_does_not_leave_fit_unobserved():
    # Tune stops a trial by raising inside its report; the error must reach the trial.
    def report(item):
        raise SystemExit(0)

    with pytest.raises(SystemExit):
        forward_reports(_fit_reporting(2), report, queue.Queue(), poll_seconds=0.005)
