"""Experiment tracking: the MLflow client (:mod:`~popdistill.tracking.client`), the one table
formatter (:mod:`~popdistill.tracking.tables`) and figures (:mod:`~popdistill.tracking.figures`);
``popdistill ui`` screenshots for tests and docs live in :mod:`~popdistill.tracking.screenshot`.
Nothing heavy (MLflow, matplotlib) is imported until used."""

from popdistill.tracking.client import (
    LINEAGE_KEYS,
    NullRunHandle,
    NullTracker,
    RunHandle,
    Tracker,
    TrackingConfig,
    create_tracker,
    default_tracking_uri,
    flatten_config,
    truncate,
)
from popdistill.tracking.figures import generation_figure
from popdistill.tracking.tables import table_csv, table_markdown, text_table

__all__ = [
    "LINEAGE_KEYS",
    "NullRunHandle",
    "NullTracker",
    "RunHandle",
    "Tracker",
    "TrackingConfig",
    "create_tracker",
    "default_tracking_uri",
    "flatten_config",
    "generation_figure",
    "table_csv",
    "table_markdown",
    "text_table",
    "truncate",
]
