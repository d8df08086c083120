"""Training configs: one student run (:class:`TrainConfig`) and a population of them.

Defaults are the papers' values (PAPERS.md section 3): Adam lr 1e-3, MSE to the teacher's
soft mask, LowRes-Net trained on 160-px resizes with joint random 128 crops and 32x32 labels
(batch 32), the U-Net family on 310-px resizes with random 256 crops (batch 16). Sizes are
derived from the built model's ``input_size`` / ``output_size`` (:func:`resolve_sizes`), so
tiny test variants scale down with the same ratios.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from popdistill.choices import LOSSES, LR_SCHEDULES, PRECISIONS
from popdistill.config import choice, job
from popdistill.errors import UserError
from popdistill.resources import ResourcesConfig
from popdistill.train.ema import validate_decay

__all__ = [
    "AugmentConfig",
    "AugmentSizes",
    "TrainConfig",
    "PopulationConfig",
    "DEFAULT_STUDENTS",
    "resolve_sizes",
    "resolve_batch_size",
]

DEFAULT_STUDENTS = ["lowres", "fconv", "unet", "denseunet", "dilateunet"]

# Thesis resize / crop ratios: LowRes-Net 160 -> 128 (its output is a reduced 32x32 mask),
# the full-resolution U-Net family 310 -> 256.
REDUCED_OUTPUT_RATIO = 160 / 128
FULL_OUTPUT_RATIO = 310 / 256
REDUCED_OUTPUT_BATCH = 32
FULL_OUTPUT_BATCH = 16


@dataclass
class AugmentConfig:
    """Joint image / mask augmentation. ``None`` sizes are derived from the model."""

    resize: int | None = None  # side of the square the pair is resized to before cropping
    resize_ratio: float | None = None  # resize = round(crop * ratio); None: the thesis ratio
    crop: int | None = None  # random crop side; None: the model's input_size
    label: int | None = None  # target mask side; None: the model's output_size
    flip: bool = True  # random horizontal flip of the pair

    def validate(self) -> None:
        for name in ("resize", "crop", "label"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UserError(f"augment.{name}: must be positive, got {value}")
        if self.resize_ratio is not None and self.resize_ratio < 1.0:
            raise UserError(f"augment.resize_ratio: must be >= 1, got {self.resize_ratio}")


@dataclass(frozen=True)
class AugmentSizes:
    """Resolved sizes: resize the pair to ``resize``, crop ``crop``, mask to ``label``."""

    resize: int
    crop: int
    label: int
    flip: bool = True


def resolve_sizes(aug: AugmentConfig, input_size: int, output_size: int) -> AugmentSizes:
    """Concrete augmentation sizes for a model with the given input and output sides.

    A model whose output is smaller than its input (LowRes-Net) gets the LowRes-Net ratio
    160/128, a full-resolution one (the U-Nets) 310/256: 128 -> 160 and 256 -> 310 exactly,
    64 -> 80 / 78 for the tiny variants.
    """
    crop = aug.crop or input_size
    label = aug.label or output_size
    ratio = aug.resize_ratio or (
        REDUCED_OUTPUT_RATIO if output_size < input_size else FULL_OUTPUT_RATIO
    )
    resize = aug.resize or int(round(crop * ratio))
    if resize < crop:
        raise UserError(f"augment.resize: {resize} is smaller than the crop {crop}")
    return AugmentSizes(resize=resize, crop=crop, label=label, flip=aug.flip)


def resolve_batch_size(batch_size: int | None, input_size: int, output_size: int) -> int:
    """The configured batch size, or the thesis's: 32 for LowRes-style students, 16 else."""
    if batch_size:
        return batch_size
    return REDUCED_OUTPUT_BATCH if output_size < input_size else FULL_OUTPUT_BATCH


@dataclass
class TrainConfig:
    """One student's training run (one Ray Train run named ``run_name``).

    ``store`` / ``val_store``: folders of frame-record Parquet files (local paths or pyarrow
    URIs). Training uses the teacher's soft ``mask`` only; ``gt_mask`` of the validation store,
    where present, gives the validation P and J. ``out`` is the run directory: checkpoints go
    to ``out/train/<run_name>``. Re-running with the same ``out`` and name resumes from the
    latest checkpoint unless ``resume`` is false.
    """

    store: str = job("", required=True)
    val_store: str | None = job(None)
    out: str = job("", required=True)
    student: str = job("lowres")
    model: dict[str, Any] = job(default_factory=dict)  # create_student keyword overrides
    name: str | None = job(None)  # run name; default: the student name
    # passes over the selected frames per student
    epochs: int = 20
    # Budgets besides ``epochs``: training ends at whichever comes first (None: no such limit);
    # the epoch in which a budget runs out ends there, and is the last one checkpointed.
    max_steps: int | None = None  # optimiser steps over the whole run (resumed runs count on)
    max_seconds: float | None = None  # seconds spent in training epochs (resumed runs count on)
    # fp32, bf16 (autocast; channels_last on CUDA) or auto: bf16 on CUDA, fp32 on a CPU
    precision: str = choice("auto", PRECISIONS)
    batch_size: int | None = None  # None: 32 (LowRes-style) or 16 (full-resolution output)
    # frames per validation batch
    val_batch_size: int = 64
    # validate every this many epochs, and always after the last; 0: never (the pipeline
    # scores every student on its held-out videos after training anyway)
    val_every: int = 1
    # Adam learning rate (the papers: 1e-3)
    lr: float = 1e-3
    # constant (the papers) or cosine: annealed from ``lr`` towards zero over ``epochs``, one
    # rate per epoch (loop.lr_factor); smaller last steps steady the final student.
    lr_schedule: str = choice(LR_SCHEDULES[0], LR_SCHEDULES)
    # 0: off; else validate, checkpoint and predict with an exponential moving average of the
    # weights (popdistill.train.ema), over about the last 1 / (1 - ema_decay) steps.
    ema_decay: float = 0.0
    # Adam weight decay
    weight_decay: float = 0.0
    # loss to the teacher's soft mask
    loss: str = choice(LOSSES[0], LOSSES)
    # joint image / mask augmentation; sizes default to the model's
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # weights, batch order and augmentation; the same seed reruns the same batches
    seed: int = 0
    # Scaling: per-worker CPUs (0.9 lets two runs share a 2-CPU machine with their drivers),
    # CPUs of each population trial's driver, CPUs of each Ray Data read task.
    num_workers: int = 1
    use_gpu: bool | None = job(None)  # None: use GPUs when the cluster has them
    gpus_per_worker: float = job(ResourcesConfig.gpus_per_worker)  # < 1: students share a GPU
    cpus_per_worker: float = job(ResourcesConfig.cpus_per_worker)
    # CPUs of each student's trial driver (Ray Tune)
    driver_cpus: float = 0.01
    # CPUs of each Ray Data read task of a streamed store
    data_cpus: float = 0.05
    torch_threads: int = 1  # per CPU worker
    # Stores of at most this many MB (Parquet on disk) are read once into the Ray object store;
    # larger ones stream from storage every epoch (flat memory, slower epochs).
    cache_mb: float = 1024.0
    shuffle_buffer: int = 256  # rows in each worker's local shuffle buffer (0: no shuffle)
    checkpoint_every: int = 1  # epochs; the last epoch is always checkpointed
    # checkpoints kept per student (the newest)
    keep_checkpoints: int = 2
    max_failures: int = 2  # worker-group restarts (each resumes from the latest checkpoint)
    # a rerun continues each student from its latest checkpoint
    resume: bool = True
    # Fault injection for tests: the worker exits at the start of ``fault_epoch`` once, when
    # the file ``fault_marker`` does not exist yet (it is created first).
    fault_epoch: int | None = job(None)
    fault_marker: str = job("")

    @property
    def run_name(self) -> str:
        return self.name or self.student

    def validate(self) -> None:
        if self.epochs < 1:
            raise UserError(f"epochs: must be >= 1, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"max_steps: must be >= 1, got {self.max_steps}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise UserError(f"max_seconds: must be positive, got {self.max_seconds}")
        if self.val_every < 0:
            raise UserError(f"val_every: must be >= 0, got {self.val_every}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UserError(f"batch_size: must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise UserError(f"lr: must be positive, got {self.lr}")
        try:
            validate_decay(self.ema_decay, "ema_decay")
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if self.num_workers < 1:
            raise UserError(f"num_workers: must be >= 1, got {self.num_workers}")
        if self.checkpoint_every < 1:
            raise UserError(f"checkpoint_every: must be >= 1, got {self.checkpoint_every}")
        if self.cpus_per_worker < 0 or self.driver_cpus < 0 or self.data_cpus < 0:
            raise UserError("cpus_per_worker, driver_cpus, data_cpus: must be >= 0")
        if self.gpus_per_worker <= 0:
            raise UserError(f"gpus_per_worker: must be positive, got {self.gpus_per_worker}")
        if "/" in self.run_name or not self.run_name:
            raise UserError(f"name: {self.run_name!r} is not a valid run name")


@dataclass
class PopulationConfig:
    """A population: the shared ``train`` settings, the students, per-student model kwargs
    and how many runs may train at once."""

    train: TrainConfig
    students: list[str] = field(default_factory=lambda: list(DEFAULT_STUDENTS))
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_concurrent: int | None = None  # runs at once; None: as many as the cluster fits

    def validate(self) -> None:
        if not self.students:
            raise UserError("students: at least one student is needed")
        if len(set(self.students)) != len(self.students):
            raise UserError(f"students: duplicate names in {self.students}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise UserError(f"max_concurrent: must be >= 1, got {self.max_concurrent}")
        unknown = sorted(set(self.models) - set(self.students))
        if unknown:
            raise UserError(f"models: {unknown[0]!r} is not one of the students")

    def configs(self) -> list[TrainConfig]:
        """One TrainConfig per student, named after it."""
        return [
            replace(
                self.train, student=s, name=s, model={**self.train.model, **self.models.get(s, {})}
            )
            for s in self.students
        ]
