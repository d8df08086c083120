"""The Ray resources of every step, defined once: a run config's ``resources`` section, and the
defaults that the teacher (:class:`~popdistill.teacher.config.TeacherConfig`), the students'
inference (:class:`~popdistill.inference.predict.PredictConfig`), training
(:class:`~popdistill.train.config.TrainConfig`) and TeachText take for their own resource
fields when run alone (``popdistill teacher``, ``predict``, ``train``, ``teachtext``)."""

from __future__ import annotations

from dataclasses import dataclass

from popdistill.choices import GPU_MODES, use_gpu
from popdistill.config import choice
from popdistill.errors import UserError

__all__ = ["ResourcesConfig"]


@dataclass
class ResourcesConfig:
    """Ray: ``address`` (None: ``RAY_ADDRESS`` or a local Ray of ``num_cpus``), the teacher's
    and the students' inference actors (``actors`` of ``actor_cpus`` CPUs, ``gpus_per_actor``
    GPUs each when the cluster has GPUs), CPUs and GPUs per training worker, and ``gpu`` (auto:
    when the cluster has them). ``cpus_per_worker`` 0.9 lets two students train at once on a
    2-CPU machine beside their drivers; ``actor_cpus`` 0.5 leaves room for the read tasks
    beside two actors. ``gpus_per_worker`` < 1 lets several students train at once on one GPU
    (0.2: the five of a population together); Ray Tune starts as many as the GPUs fit."""

    # Ray cluster address (null: RAY_ADDRESS, else a local Ray)
    address: str | None = None
    # CPUs of a local Ray (null: the machine's)
    num_cpus: int | None = None
    # object store of a local Ray, GiB (null: Ray's default, 30 % of memory); frames never
    # cross it in bulk, so the cap only bounds what training caches and what spills to disk
    object_store_gib: float | None = 4.0
    # the teacher's and the students' inference actors
    actors: int = 2
    # CPUs per training worker (0.9: two students train at once on 2 CPUs)
    cpus_per_worker: float = 0.9
    # CPUs per inference actor (actors x actor_cpus + a read task must fit the CPUs)
    actor_cpus: float = 0.5
    # use GPUs: auto (when the cluster has them), yes or no
    gpu: str = choice(GPU_MODES[0], GPU_MODES)
    # GPUs per training worker (< 1: students share a GPU; 0.2: five on one)
    gpus_per_worker: float = 1.0
    # GPUs per inference actor when GPUs are used
    gpus_per_actor: float = 0.25

    def use_gpu(self) -> bool | None:
        return use_gpu(self.gpu)

    def validate(self) -> None:
        if self.actors < 1:
            raise UserError(f"actors: must be >= 1, got {self.actors}")
        if min(self.cpus_per_worker, self.actor_cpus, self.gpus_per_actor) < 0:
            raise UserError("cpus_per_worker, actor_cpus, gpus_per_actor: must be >= 0")
        if not 0 < self.gpus_per_worker:
            raise UserError(f"gpus_per_worker: must be positive, got {self.gpus_per_worker}")
        if self.object_store_gib is not None and self.object_store_gib < 0.1:
            raise UserError(f"object_store_gib: must be >= 0.1 (or null), got {self.object_store_gib}")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise UserError(f"num_cpus: must be >= 1, got {self.num_cpus}")
