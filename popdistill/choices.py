"""Names of options that configs must know without importing torch (validation, ``--help``).

Each tuple here is also a :class:`~popdistill.registry.Registry`'s list of built-in names: the
registry refuses to load when its module does not register every one of them, so a name here
always has an implementation. The first name of each tuple is the default.
"""

__all__ = [
    "PRECISIONS",
    "GPU_MODES",
    "ENSEMBLES",
    "SCORERS",
    "LABEL_RULES",
    "LOSSES",
    "LR_SCHEDULES",
    "use_gpu",
]

# popdistill.students.device: fp32, bf16 autocast, or auto (bf16 on CUDA, fp32 elsewhere)
PRECISIONS = ("auto", "fp32", "bf16")
# resources.gpu: use GPUs when the cluster has them, always, or never
GPU_MODES = ("auto", "yes", "no")
# popdistill.students.multinet: the students' Multi-Net product (the thesis) or its n-th root
ENSEMBLES = ("product", "geomean")
# popdistill.selection.rescore: what scores a candidate mask at generation >= 2
SCORERS = ("evalseg", "agreement")
# popdistill.selection.labels: what a kept frame of generation >= 2 trains on
LABEL_RULES = ("best", "multinet", "multinet-binary", "multinet-product")
# popdistill.train.loop: the students' loss to their teacher's soft mask
LOSSES = ("mse", "bce")
# popdistill.train.loop.lr_factor: a constant learning rate (the papers) or cosine annealing
LR_SCHEDULES = ("constant", "cosine")


def use_gpu(mode: str) -> bool | None:
    """``resources.gpu`` as Ray's ``use_gpu``: True (yes), False (no) or None (auto: when the
    cluster has GPUs)."""
    if mode not in GPU_MODES:
        raise ValueError(f"gpu: {mode!r} is not one of {', '.join(GPU_MODES)}")
    return {"auto": None, "yes": True, "no": False}[mode]
