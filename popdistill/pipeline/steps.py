"""What each step of the generation loop returns, typed: what the manifest records (as JSON) and
what a resumed run reads back (:meth:`popdistill.pipeline.manifest.Manifest.run` with
``result=``), so the loop reads ``prev.train["unet"].checkpoint``, never a string key path.

    eval/videopca            Baselines       VideoPCA's store of the held-out videos, the
                                             held-out scores of VideoPCA and the centre prior
    gen-1/teacher,           Selection       the selected store the generation trains on
    gen-k/select
    gen-k/train              {name: Student} each student's checkpoint and final metrics
    gen-k/evalseg            EvalSeg         the EvalSeg-Net that selects generation k+1's labels
    gen-k/predict,           {name: store}   plain mappings
    gen-k/predict-eval
    gen-k/evaluate           {method: metrics}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["Baselines", "Selection", "Student", "EvalSeg", "from_json", "students_from_json",
           "Generation"]

T = TypeVar("T")


def from_json(cls: type[T], data: Any) -> T:
    """``cls`` from its recorded JSON; fields a record lacks take their defaults, keys the
    class does not know (recorded by another version) are ignored."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def students_from_json(data: Any) -> dict[str, Student]:
    return {name: from_json(Student, value) for name, value in data.items()}


@dataclass
class Baselines:
    store: str  # VideoPCA's masks of the held-out videos
    results: dict[str, dict[str, Any]]  # method -> overall held-out metrics


@dataclass
class Selection:
    """A generation's training labels: the ``selected`` store, the score ``threshold`` it was
    kept at, its ``stats`` (logged to MLflow) and the lineage name of its ``teacher``."""

    selected: str
    threshold: float
    stats: dict[str, float]
    teacher: str
    store: str | None = None  # generation 1: every frame's VideoPCA mask
    chosen: dict[str, int] | None = None  # generation >= 2: frames whose best mask is each's

    def lineage(self, generation: int) -> dict[str, Any]:
        """The MLflow lineage tags of the runs trained on it."""
        return {"store": self.selected, "generation": generation, "threshold": self.threshold,
                "teacher": self.teacher}


@dataclass
class Student:
    checkpoint: str  # the model.pt of its last checkpoint
    metrics: dict[str, Any]
    wall_seconds: float
    run_id: str | None = None  # its MLflow run


@dataclass
class EvalSeg:
    checkpoint: str
    frames: int
    pairs: int
    target_mean: float
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"


@dataclass
class Generation:
    """One finished generation as the next one needs it (not recorded itself: its steps are)."""

    generation: int
    selection: Selection
    train: dict[str, Student]
    results: dict[str, dict[str, Any]]
    frames_store: str  # generation 1's VideoPCA store of the training videos
    teacher_selected: str  # generation 1's selected store
    evalseg: EvalSeg | None = None  # trained by the next generation when it selects with it
