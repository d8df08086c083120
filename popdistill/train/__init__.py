"""Student training: the Ray Train loop, the population launcher and EvalSeg-Net training.

``train_student(cfg)`` trains one student as one Ray Train run; ``train_population(cfgs)`` runs
several concurrently under Ray Tune. The data and epoch helpers are pure torch (no Ray); Ray is
imported only inside the functions that need it.
"""

from popdistill.train.config import (
    DEFAULT_STUDENTS,
    AugmentConfig,
    AugmentSizes,
    PopulationConfig,
    TrainConfig,
    resolve_batch_size,
    resolve_sizes,
)
from popdistill.train.launcher import build_trainer, train_population, train_student
from popdistill.train.loop import train_loop_per_worker

__all__ = [
    "DEFAULT_STUDENTS",
    "AugmentConfig",
    "AugmentSizes",
    "PopulationConfig",
    "TrainConfig",
    "resolve_batch_size",
    "resolve_sizes",
    "build_trainer",
    "train_population",
    "train_student",
    "train_loop_per_worker",
]
