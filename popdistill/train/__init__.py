"""Student training: the Ray Train loop, the population launcher and EvalSeg-Net training.

``train_student(cfg)`` trains one student as one Ray Train run; ``train_population(cfgs)`` runs
several concurrently under Ray Tune. The data and epoch helpers are pure torch (no Ray); Ray is
imported only inside the functions that need it.

The names below are imported lazily: ``popdistill.train.config`` is torch-free (run configs,
``popdistill train --help``), and importing the package must not pay for torch.
"""

from popdistill._lazy import lazy_getattr

_EXPORTS = {
    "DEFAULT_STUDENTS": "config",
    "AugmentConfig": "config",
    "AugmentSizes": "config",
    "PopulationConfig": "config",
    "TrainConfig": "config",
    "resolve_batch_size": "config",
    "resolve_sizes": "config",
    "build_trainer": "launcher",
    "train_population": "launcher",
    "train_student": "launcher",
    "train_loop_per_worker": "loop",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
