"""Ray Train runs inside Ray Tune trials: every Train report reaches Tune, without a deadlock.

A Tune trial here is a function that builds one ``TorchTrainer`` and calls ``fit()`` (Train V2
cannot run under ``Tuner`` directly). Ray's own bridge, ``TuneReportCallback``, hands each
report to the trial actor's main thread through a one-item queue; that thread forwards it
into the trial session's one-slot result queue. When ``fit()`` returns right after the last
epoch's report, the trial function's own end-of-trial report can fill that slot first, and
the main thread then blocks forever on the put. Seen as a job that never finishes (a
``ray job submit`` test's job hung 13 minutes after its only student had finished); in a loop
of one-report trials the 15th hung, and a stack dump of its trial actor showed both threads in
``Queue.put``.

:func:`fit_reporting_to_tune` avoids the race: ``fit()`` runs in a helper thread, a callback
in the Train controller puts each report on an unbounded queue, and the trial's own thread —
the only one that reports to Tune — forwards them with ``tune.report`` until ``fit()`` has
returned and the queue is drained. Tune schedulers (ASHA in the retrieval sweep) still see
every epoch.
"""

from __future__ import annotations

import queue as std_queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ray.train.v2.api.callback import UserCallback
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY  # the key Ray's own bridge uses


class QueueReportCallback(UserCallback):
    """Train callback (runs in the Train controller): rank 0's metrics of every report, plus
    the checkpoint's path when one was reported, put on ``queue``."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]],
                     checkpoint: Any | None) -> None:
        item = dict(metrics[0])
        if checkpoint is not None:
            item[CHECKPOINT_PATH_KEY] = checkpoint.path
        self._queue.put(item)


def forward_reports(fit: Callable[[Sequence[Any]], Any], report: Callable[[dict], None],
                    queue: Any, poll_seconds: float = 0.5) -> Any:
    """Run ``fit([QueueReportCallback(queue)])`` in a helper thread and pass every item it
    queues to ``report``, in order, from the calling thread; return what ``fit`` returned
    (or raise what it raised) once it has finished and the queue is empty.

    ``queue``: ``put`` / ``get(timeout=)`` / ``get_nowait`` / ``empty``, raising
    :class:`queue.Empty` when empty (``ray.util.queue.Queue`` across processes;
    ``queue.Queue`` in one).
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fit([QueueReportCallback(queue)])
        except BaseException as e:  # re-raised in the calling thread
            box["error"] = e

    worker = threading.Thread(target=target, name="popdistill-train-fit", daemon=True)
    worker.start()
    while worker.is_alive():
        try:
            report(queue.get(timeout=poll_seconds))
        except std_queue.Empty:
            pass
    worker.join()
    while not queue.empty():  # what was queued between the last poll and fit()'s return
        report(queue.get_nowait())
    if "error" in box:
        raise box["error"]
    return box.get("result")


def fit_reporting_to_tune(fit: Callable[[Sequence[Any]], Any]) -> Any:
    """:func:`forward_reports` inside a Tune trial: a Ray queue (no CPU) and ``tune.report``."""
    from ray import tune
    from ray.util.queue import Queue

    q = Queue(actor_options={"num_cpus": 0})
    try:
        return forward_reports(fit, tune.report, q)
    finally:
        q.shutdown()
