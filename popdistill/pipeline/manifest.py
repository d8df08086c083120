"""The run manifest: ``RUN_DIR/manifest.json``, the record of finished steps.

A step is finished once its result is in the manifest; a re-run of the same command skips it
and reuses the stored result. The file is rewritten atomically after every step
(:meth:`RunPath.write_json`), so a driver killed at any moment leaves a valid manifest.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

from popdistill.errors import UserError
from popdistill.storage import RunPath

__all__ = ["Manifest"]

# Config sections that may change between a run and its resumption (where and how it runs).
RESUMABLE_CHANGES = ("out", "resources", "tracking")


class Manifest:
    """Finished steps of one run, in order, each with its result and timings."""

    def __init__(self, root: RunPath):
        self.root = root
        self.path = root / "manifest.json"
        self.data: dict[str, Any] = self.path.read_json() if self.path.exists() else {}
        self.data.setdefault("steps", {})

    @property
    def steps(self) -> dict[str, dict[str, Any]]:
        return self.data["steps"]

    def bind_config(self, config: dict[str, Any], added: dict[str, dict[str, Any]] | None = None) -> None:
        """Record the run's config; a resumed run must use the same one (up to where and how
        it runs: ``out``, ``resources``, ``tracking``). ``added``: section -> field -> default
        of fields that a run recorded by an earlier version may lack; such a field, at its
        default now, is no change, and neither is a field the section no longer has (a run
        started before an upgrade resumes after it)."""
        # as JSON reads it back (tuples are lists there)
        config = json.loads(json.dumps(config, default=str))
        key = {k: v for k, v in config.items() if k not in RESUMABLE_CHANGES}
        before = self.data.get("config")
        if before is not None:
            old = {k: v for k, v in before.items() if k not in RESUMABLE_CHANGES}
            for section, fields in (added or {}).items():
                if isinstance(old.get(section), dict) and isinstance(key.get(section), dict):
                    old[section] = _known(_with_defaults(old[section], fields), key[section])
            changed = sorted(k for k in set(old) | set(key) if old.get(k) != key.get(k))
            if changed:
                raise UserError(
                    f"{self.path.uri}: this run directory holds a run of another config "
                    f"(section {changed[0]!r} differs); use a new --out or the original config"
                )
        self.data["config"] = config
        self.data.setdefault("created", time.time())
        self.path.write_json(self.data)

    def done(self, step: str) -> bool:
        return step in self.steps

    def result(self, step: str) -> Any:
        return self.steps[step]["result"]

    def finish(self, step: str, result: Any, started: float) -> None:
        self.steps[step] = {"started": started, "finished": time.time(),
                            "seconds": time.time() - started, "result": result}
        self.path.write_json(self.data)

    def forget(self, step: str) -> list[str]:
        """Drop ``step`` and every step recorded after it (they may depend on its outputs);
        returns their names."""
        names = list(self.steps)
        dropped = names[names.index(step):]
        for name in dropped:
            del self.steps[name]
        self.path.write_json(self.data)
        return dropped

    def run(self, step: str, fn: Callable[[], Any], log: Callable[[str], None] = print,
            result: Callable[[Any], Any] | None = None) -> Any:
        """``fn()``'s result, computed once: a finished step returns its stored result, unless
        an output its result names is damaged (:mod:`popdistill.pipeline.integrity`): then the
        damaged part is removed, the step and the steps after it are forgotten, and it runs
        again. The result is recorded as JSON (dataclasses as their fields) and handed back
        as JSON reads it, through ``result`` when given (:mod:`popdistill.pipeline.steps`)."""
        read = result or (lambda data: data)
        if self.done(step):
            from popdistill.pipeline.integrity import damaged_outputs, repair

            damaged = damaged_outputs(self.result(step), self.root)
            if not damaged:
                log(f"[{step}] finished before ({self.steps[step]['seconds']:.1f} s); skipped")
                return read(self.result(step))
            for path, problem in damaged:
                log(f"[{step}] {path}: {problem}; removed, with what depends on it: "
                    + ", ".join(repair(path)))
            dropped = self.forget(step)
            log(f"[{step}] redone (and after it: {', '.join(dropped[1:]) or 'nothing'})")
        log(f"[{step}] ...")
        started = time.time()
        # exactly as a resumed run reads it back (write_json sorts keys)
        recorded = json.loads(json.dumps(_fields(fn()), default=str, sort_keys=True))
        self.finish(step, recorded, started)
        log(f"[{step}] done in {self.steps[step]['seconds']:.1f} s")
        return read(recorded)

    def seconds(self) -> dict[str, float]:
        return {name: s["seconds"] for name, s in self.steps.items()}


def _with_defaults(recorded: dict, defaults: dict) -> dict:
    """``recorded`` with the ``defaults`` it lacks, nested sections too."""
    out = dict(defaults)
    for k, v in recorded.items():
        out[k] = _with_defaults(v, out[k]) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _known(recorded: dict, now: dict) -> dict:
    """``recorded`` without the fields a section no longer has (moved to ``resources``, which a
    resumed run may change)."""
    return {k: v for k, v in recorded.items() if k in now}


def _fields(value: Any) -> Any:
    """Dataclasses (a step's typed result, or a mapping of them) as plain mappings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: _fields(v) for k, v in value.items()}
    return value
