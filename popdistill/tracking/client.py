"""Experiment tracking: the one module that talks to MLflow; nothing is imported at import time.

Run tree (one MLflow run each, children linked by the ``mlflow.parentRunId`` tag)::

    pipeline run  (popdistill.kind=pipeline, popdistill.run_id=<name>; params = whole config)
      gen-<k>     (kind=generation, popdistill.generation=k)
        gen-<k>/<student>  (kind=student; popdistill.lineage.* = the masks it learned from)
        gen-<k>/evalseg    (kind=evalseg; lineage too)

Every ``*_run`` call is get-or-create: runs are found again by their tags, so a resumed
pipeline reuses its runs instead of duplicating them. A :class:`RunHandle` is a small
picklable value (tracking URI + run id), so a Ray worker can log to a run the driver made.
Only the MLflow client API is used (no ``mlflow.set_experiment`` / active-run globals).

Metric names used by the pipeline: ``train/loss`` and ``val/J`` (step = epoch), ``final/P``,
``final/J``, ``final/CorLoc``, ``teacher/J``, ``selection/*`` (:func:`popdistill.selection.stats.selection_summary`),
``throughput/frames_per_s``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from popdistill.errors import UserError
from popdistill.jsonable import plain
from popdistill.tracking.tables import table_csv, table_markdown

__all__ = [
    "LINEAGE_KEYS",
    "TrackingConfig",
    "Tracker",
    "NullTracker",
    "RunHandle",
    "NullRunHandle",
    "create_tracker",
    "default_tracking_uri",
    "flatten_config",
    "truncate",
]

MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
MAX_TAG_CHARS = 8000  # MLflow's limit on a tag value
MAX_KEY_CHARS = 250
BATCH = 100  # params/tags per log_batch call (MLflow's limit)
PARENT_TAG = "mlflow.parentRunId"
LINEAGE_KEYS = ("store", "generation", "threshold", "teacher")
# The UI opens such an experiment on its model-training (runs) view.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
_BAD_KEY_CHARS = re.compile(r"[^\w./\- ]")


@dataclass
class TrackingConfig:
    """``tracking:`` config section. ``uri`` None -> ``$MLFLOW_TRACKING_URI`` or the run dir."""

    enabled: bool = True  # log the run tree to MLflow
    uri: str | None = None  # MLflow tracking URI (null: $MLFLOW_TRACKING_URI, else RUN_DIR/mlflow.db)
    experiment: str = "popdistill"  # the MLflow experiment the runs go to


# -- pure helpers -----------------------------------------------------------------------------
def default_tracking_uri(run_dir: str | os.PathLike) -> str:
    """``sqlite:///<run_dir>/mlflow.db`` for a local run dir (absolute path)."""
    if "://" in str(run_dir):
        raise UserError(
            f"run dir {run_dir} is not local: set tracking.uri (e.g. http://<head>:5000) "
            "or MLFLOW_TRACKING_URI"
        )
    return "sqlite:///" + str(Path(run_dir).resolve() / "mlflow.db")


def truncate(value: str, limit: int) -> str:
    """``value`` cut to at most ``limit`` characters, ending in a marker when cut."""
    if len(value) <= limit:
        return value
    marker = f"...[truncated {len(value)} chars]"
    return value[: limit - len(marker)] + marker


def _key(key: str) -> str:
    return _BAD_KEY_CHARS.sub("_", key)[:MAX_KEY_CHARS]


def flatten_config(config: Any, prefix: str = "") -> dict[str, str]:
    """A (nested) config as ``{"a.b.c": "value"}``; lists of mappings get index keys."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    out: dict[str, str] = {}
    if isinstance(config, Mapping):
        items = [(str(k), v) for k, v in config.items()]
    elif isinstance(config, list | tuple) and any(
        isinstance(v, Mapping) or dataclasses.is_dataclass(v) for v in config
    ):
        items = [(str(i), v) for i, v in enumerate(config)]
    else:
        value = json.dumps(list(config)) if isinstance(config, list | tuple) else str(config)
        return {_key(prefix or "value"): truncate(value, MAX_PARAM_CHARS)}
    for k, v in items:
        out.update(flatten_config(v, f"{prefix}.{k}" if prefix else k))
    return out


def _check_lineage(lineage: Mapping[str, Any]) -> dict[str, str]:
    missing = [k for k in LINEAGE_KEYS if k not in lineage]
    if missing:
        raise ValueError(f"lineage lacks {', '.join(missing)} (needs {', '.join(LINEAGE_KEYS)})")
    return {f"popdistill.lineage.{_key(k)}": str(v) for k, v in lineage.items()}


def _retry(fn, *args, attempts: int = 6, **kwargs):
    """Call ``fn``; retry with back-off while SQLite reports a locked database."""
    for i in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if "database is locked" not in str(exc) or i == attempts - 1:
                raise
            time.sleep(0.2 * 2**i)


# -- run handles ------------------------------------------------------------------------------
@dataclass
class RunHandle:
    """One MLflow run, addressed by tracking URI and run id; picklable (the client is not sent)."""

    tracking_uri: str
    run_id: str
    name: str = ""
    resumed: bool = False
    _client: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_client": None}

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (values truncated to MLflow's limit). Re-logging an equal value is a
        no-op; a different value for a logged key raises UserError (MLflow params are fixed)."""
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params
        new = {}
        for k, v in params.items():
            k, v = _key(k), truncate(str(v), MAX_PARAM_CHARS)
            if k in logged and logged[k] != v:
                raise UserError(
                    f"run {self.name or self.run_id}: param {k!r} was {logged[k]!r}, now {v!r}; "
                    "resume with the config the run started with"
                )
            if k not in logged:
                new[k] = v
        items = [Param(k, v) for k, v in new.items()]
        for i in range(0, len(items), BATCH):
            _retry(self.client.log_batch, self.run_id, params=items[i : i + BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(_key(k), float(v), now, int(step or 0)) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            _retry(self.client.log_batch, self.run_id, metrics=items[i : i + 1000])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(_key(k), truncate(str(v), MAX_TAG_CHARS)) for k, v in tags.items()]
        for i in range(0, len(items), BATCH):
            _retry(self.client.log_batch, self.run_id, tags=items[i : i + BATCH])

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Log a file or a whole folder (e.g. a checkpoint) under ``artifact_path``."""
        path = Path(path)
        if path.is_dir():
            _retry(self.client.log_artifacts, self.run_id, str(path), artifact_path)
        elif path.is_file():
            _retry(self.client.log_artifact, self.run_id, str(path), artifact_path)
        else:
            raise FileNotFoundError(f"artifact not found: {path}")

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        _retry(self.client.log_figure, self.run_id, figure, artifact_file)

    def log_image(
        self,
        image: np.ndarray | Any,
        artifact_file: str | None = None,
        *,
        key: str | None = None,
        step: int | None = None,
    ) -> None:
        """An image (HxW or HxWx3 array, or PIL) as a PNG file, or with ``key`` and ``step``
        as a tracked image the UI shows per step in its charts."""
        if isinstance(image, np.ndarray) and image.dtype != np.uint8:
            image = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
        if key is not None:
            _retry(self.client.log_image, self.run_id, image, key=_key(key), step=step or 0)
        if artifact_file is not None:
            _retry(self.client.log_image, self.run_id, image, artifact_file=artifact_file)

    def log_table(self, rows: Sequence[Mapping[str, Any]], name: str, artifact_path: str = "") -> None:
        """Rows (dicts) as ``<name>.csv`` and ``<name>.md``."""
        base = f"{artifact_path.rstrip('/')}/{name}" if artifact_path else name
        self.log_text(table_csv(rows), f"{base}.csv")
        self.log_text(table_markdown(rows), f"{base}.md")

    def log_text(self, text: str, artifact_file: str) -> None:
        _retry(self.client.log_text, self.run_id, text, artifact_file)

    def log_dict(self, obj: Mapping[str, Any], artifact_file: str) -> None:
        """A mapping as JSON (``.json``) or YAML (``.yaml``), e.g. ``report.json``."""
        _retry(self.client.log_dict, self.run_id, plain(obj), artifact_file)

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run FINISHED, FAILED or KILLED."""
        _retry(self.client.set_terminated, self.run_id, status)

    def __enter__(self) -> RunHandle:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.end("FINISHED" if exc_type is None else "FAILED")




@dataclass
class NullRunHandle:
    """The run handle of a :class:`NullTracker`: every call does nothing."""

    name: str = ""
    run_id: str | None = None
    resumed: bool = False

    def _noop(self, *args, **kwargs) -> None:
        return None

    log_params = log_metrics = set_tags = log_artifact = log_figure = _noop
    log_image = log_table = log_text = log_dict = end = _noop

    def __enter__(self) -> NullRunHandle:
        return self

    def __exit__(self, *exc) -> None:
        return None


# -- trackers ---------------------------------------------------------------------------------
class Tracker:
    """Get-or-create runs of one experiment; created once in the driver before parallel work."""

    def __init__(
        self,
        run_dir: str | os.PathLike,
        tracking_uri: str | None = None,
        experiment: str = "popdistill",
        artifact_location: str | None = None,
    ):
        from mlflow.tracking import MlflowClient

        self.run_dir = str(run_dir)
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(run_dir)
        self.tracking_uri = uri
        if artifact_location is None and not uri.startswith(("http:", "https:", "databricks")):
            remote = "://" in self.run_dir
            root = self.run_dir.rstrip("/") if remote else str(Path(self.run_dir).resolve())
            artifact_location = f"{root}/mlartifacts"
        self.client = MlflowClient(tracking_uri=uri)
        self.experiment_id = self._experiment(experiment, artifact_location)

    def _experiment(self, name: str, artifact_location: str | None) -> str:
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            try:
                return self.client.create_experiment(
                    name, artifact_location=artifact_location, tags=EXPERIMENT_TAGS
                )
            except MlflowException:  # created meanwhile by another driver
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
        if exp.lifecycle_stage == "deleted":
            self.client.restore_experiment(exp.experiment_id)
        return exp.experiment_id

    def _handle(self, run_id: str, name: str, resumed: bool) -> RunHandle:
        return RunHandle(self.tracking_uri, run_id, name, resumed, self.client)

    def _get_or_create(self, name: str, key: dict[str, str], tags: dict[str, str]) -> RunHandle:
        bad = [v for v in key.values() if "'" in v or "\\" in v]
        if bad:
            raise ValueError(f"run names may not contain quotes or backslashes: {bad[0]!r}")
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in key.items())
        runs = self.client.search_runs(
            [self.experiment_id], query, max_results=10, order_by=["attributes.start_time ASC"]
        )
        if runs:
            handle = self._handle(runs[0].info.run_id, name, True)
            handle.set_tags(tags)
            return handle
        all_tags = {k: truncate(str(v), MAX_TAG_CHARS) for k, v in {**key, **tags}.items()}
        run = _retry(self.client.create_run, self.experiment_id, tags=all_tags, run_name=name)
        return self._handle(run.info.run_id, name, False)

    def _tags(self, handle: RunHandle) -> dict[str, str]:
        return self.client.get_run(handle.run_id).data.tags

    def pipeline_run(self, name: str, config: Any = None) -> RunHandle:
        """The parent run named ``name``; logs the whole config (params + ``config.yaml``)."""
        key = {"popdistill.kind": "pipeline", "popdistill.run_id": name}
        handle = self._get_or_create(name, key, {"popdistill.run_dir": self.run_dir})
        if config is not None:
            import yaml

            handle.log_params(flatten_config(config))
            values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
            handle.log_text(yaml.safe_dump(plain(values), sort_keys=False), "config.yaml")
        return handle

    def generation_run(self, parent: RunHandle, k: int) -> RunHandle:
        key = {PARENT_TAG: parent.run_id, "popdistill.kind": "generation",
               "popdistill.generation": str(int(k))}
        run_id = self._tags(parent)["popdistill.run_id"]
        return self._get_or_create(f"gen-{int(k)}", key, {"popdistill.run_id": run_id})

    def _member(self, gen: RunHandle, kind: str, name: str, lineage: Mapping) -> RunHandle:
        tags = _check_lineage(lineage)
        gen_tags = self._tags(gen)
        k = gen_tags["popdistill.generation"]
        key = {PARENT_TAG: gen.run_id, "popdistill.kind": kind, "popdistill.student": name}
        tags |= {
            "popdistill.generation": k,
            "popdistill.run_id": gen_tags["popdistill.run_id"],
            "popdistill.lineage.generation_run_id": gen.run_id,
        }
        return self._get_or_create(f"gen-{k}/{name}", key, tags)

    def student_run(self, gen: RunHandle, name: str, lineage: Mapping[str, Any]) -> RunHandle:
        """A student's run under generation ``gen``; ``lineage`` needs store, generation,
        threshold and teacher (the masks it learns from) and may hold more."""
        return self._member(gen, "student", name, lineage)

    def evalseg_run(self, gen: RunHandle, lineage: Mapping[str, Any]) -> RunHandle:
        return self._member(gen, "evalseg", "evalseg", lineage)

    def experiment_url(self, host: str = "http://127.0.0.1:5000") -> str:
        return f"{host}/#/experiments/{self.experiment_id}"


class NullTracker:
    """``tracking: off``: the :class:`Tracker` API, doing nothing (lineage is still checked)."""

    run_dir: str
    tracking_uri = None
    experiment_id = None

    def __init__(self, run_dir: str | os.PathLike = "", *args, **kwargs):
        self.run_dir = str(run_dir)

    def pipeline_run(self, name: str, config: Any = None) -> NullRunHandle:
        return NullRunHandle(name)

    def generation_run(self, parent: Any, k: int) -> NullRunHandle:
        return NullRunHandle(f"gen-{int(k)}")

    def student_run(self, gen: Any, name: str, lineage: Mapping[str, Any]) -> NullRunHandle:
        _check_lineage(lineage)
        return NullRunHandle(f"{gen.name}/{name}")

    def evalseg_run(self, gen: Any, lineage: Mapping[str, Any]) -> NullRunHandle:
        _check_lineage(lineage)
        return NullRunHandle(f"{gen.name}/evalseg")


def create_tracker(
    run_dir: str | os.PathLike, config: TrackingConfig | bool | None = None
) -> Tracker | NullTracker:
    """The tracker for a config section; ``False`` (YAML ``tracking: off``) gives a NullTracker."""
    if config is None or config is True:
        config = TrackingConfig()
    if config is False or not config.enabled:
        return NullTracker(run_dir)
    return Tracker(run_dir, config.uri, config.experiment)
