"""The one YAML config of a pipeline run (``popdistill run CONFIG``), validated before any work.

Sections: ``data`` (training videos), ``later_data`` (optional: the unlabeled videos generations
>= 2 select from, usually more than ``data``), ``eval`` (held-out evaluation videos, any reader format),
``teacher`` (fields of :class:`~popdistill.teacher.pipeline.TeacherConfig`), ``selection``,
``students``, ``training`` (fields of :class:`~popdistill.train.TrainConfig`), ``evalseg``
(fields of :class:`~popdistill.train.evalseg.EvalSegTrainConfig`), ``generations``,
``tracking`` and ``resources``. ``teacher``, ``training``, ``evalseg`` and ``evaluation`` are the
library's own dataclasses, loaded once as sections (:func:`popdistill.config.section`): a wrong
field fails at once with its dotted name (``training.epochs``) and the valid choices, and a
field the pipeline fills in per step (a job field: stores, folders, the resources of
``resources``) is refused there. Each option's default is the library dataclass's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from popdistill.choices import ENSEMBLES, LABEL_RULES, SCORERS, use_gpu
from popdistill.config import choice, fill, load, section, settings
from popdistill.errors import UserError
from popdistill.evaluate.metrics import EvalConfig
from popdistill.inference.config import PredictConfig
from popdistill.resources import ResourcesConfig
from popdistill.teacher.config import TeacherConfig
from popdistill.tracking.client import TrackingConfig
from popdistill.train.config import TrainConfig
from popdistill.train.evalseg import EvalSegTrainConfig

__all__ = [
    "DataConfig",
    "SelectionConfig",
    "StudentsConfig",
    "RunConfig",
    "load_run_config",
    "parse_run_config",
]


@dataclass
class DataConfig:
    """A data set: ``path`` read by the reader ``format`` with ``reader_options``. With
    ``world`` (``popdistill world`` parameters: preset, videos, frames, size, seed, knobs) the
    embedded world is generated at ``path`` when it is missing."""

    # the data set folder (a local path or a bucket URI)
    path: str = ""
    # its reader: davis, youtube_objects, object_discovery or video_folder (`popdistill evaluate
    # --help`)
    format: str = "davis"
    # the reader's options, e.g. {resolution: 480p} or a video_folder's {fps: 5, size: 256}
    reader_options: dict[str, Any] = field(default_factory=dict)
    # `popdistill world` parameters (preset, videos, frames, size, seed, ...): the embedded world
    # is generated at `path` when it is missing
    world: dict[str, Any] | None = None

    def validate(self) -> None:
        if not self.path:
            raise UserError("path: the data set folder is required")
        if self.world is not None:
            world_config(self.world)

    def generated(self) -> bool:
        return self.world is not None


def world_config(params: dict[str, Any]):
    """The WorldConfig of a ``world:`` section (``preset`` plus WorldConfig overrides)."""
    from popdistill.data.world import make_config

    params = dict(params)
    preset = params.pop("preset", "medium")
    if "camera_motions" in params and isinstance(params["camera_motions"], list):
        params["camera_motions"] = tuple(params["camera_motions"])
    for key in [k for k, v in params.items() if isinstance(v, list)]:
        params[key] = tuple(params[key])
    try:
        return make_config(preset, **params)
    except (UserError, TypeError, ValueError) as exc:
        raise UserError(f"world: {exc}") from exc


@dataclass
class SelectionConfig:
    """Which pseudo-labels each generation trains on.

    Generation 1 keeps the ``top`` fraction of frames by the VideoPCA score (mean of the
    mask's non-zero values). Generation k >= 2 scores every student's mask of every frame with
    ``scorer``, keeps each frame's best-scored mask and then the frames whose score is
    >= ``threshold`` or, when no threshold is set, the ``top`` fraction. ``scorer``:
    ``evalseg`` (EvalSeg-Net, the thesis) or ``agreement`` (EvalSeg-Net's training target
    computed exactly: cosine of the mask to the students' Multi-Net product;
    :mod:`popdistill.selection.rescore`). ``with_teacher``: generation 1's VideoPCA mask of
    each frame is one more candidate beside the students' masks (off in the thesis, where the
    students are already better than their teacher; docs/experiments/). ``ensemble``: the
    Multi-Net mask that both scorers measure agreement with: ``product`` (the thesis) or
    ``geomean``, its n-th root, which does not favour the most conservative student
    (:func:`popdistill.students.multinet.multinet_mask`; EvalSeg-Net is trained on the same
    target). ``support``: each kept mask of generation k >= 2 is zeroed outside its
    hysteresis support (>= 0.5 of its range, connected to >= 0.8 of it: the teacher's last
    step) before it becomes a label, so the next generation does not learn the students'
    faint halo (:func:`popdistill.selection.labels.label_support`). ``labels``: what a kept
    frame of generation k >= 2 trains on: ``best``, its best-scored mask (the thesis);
    ``multinet``, all the candidates' ``ensemble`` mask of that frame; ``multinet-binary``, that
    mask binarised (geometric mean >= 0.5), which carries no faint halo at all;
    ``multinet-product``, the candidates' plain product whatever ``ensemble`` is (soft, and
    smaller than any one mask: it leans to precision)
    (:mod:`popdistill.selection.labels`). ``keep_teacher``: generation k >= 2
    also trains on generation 1's selected frames that its own selection left out, with their
    VideoPCA masks (:func:`popdistill.selection.select.add_missing_frames`). ``strata``: with
    K > 1, every generation keeps the ``top`` fraction within each of K equal-count strata of
    the frames' edge density (mean Sobel magnitude), so cluttered backgrounds are not left out
    of the training set (:mod:`popdistill.selection.scores`); 1 (the default) ranks the whole
    corpus at once.
    """

    # the fraction of frames each generation keeps (generation 1 by VideoPCA score, later ones by
    # `scorer`)
    top: float = 0.1
    # generations >= 2: keep the frames scoring at least this instead of the `top` fraction
    threshold: float | None = None
    # generations >= 2: evalseg (EvalSeg-Net's predicted quality, the thesis) or agreement (its
    # training target computed exactly)
    scorer: str = choice(SCORERS[0], SCORERS)
    # generation 1's VideoPCA mask of each frame is one more candidate beside the students' masks
    with_teacher: bool = False
    # the Multi-Net mask both scorers measure agreement with: product (the thesis) or geomean, its
    # n-th root
    ensemble: str = choice(ENSEMBLES[0], ENSEMBLES)
    # zero each kept mask of generations >= 2 outside its hysteresis support before it becomes a
    # label
    support: bool = False
    # what a kept frame of generations >= 2 trains on: its best mask (best), the candidates'
    # ensemble mask, that binarised, or their plain product
    labels: str = choice(LABEL_RULES[0], LABEL_RULES)
    # generations >= 2 also train on generation 1's selected frames their own selection left out
    keep_teacher: bool = False
    # keep the `top` fraction within each of K equal-count strata of the frames' edge density (1:
    # the whole corpus at once)
    strata: int = 1

    def validate(self) -> None:
        if not 0.0 < self.top <= 1.0:
            raise UserError(f"top: {self.top} is not in (0, 1]")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise UserError(f"threshold: {self.threshold} is not in [0, 1]")
        if not isinstance(self.strata, int) or self.strata < 1:
            raise UserError(f"strata: {self.strata!r} must be an integer >= 1")


@dataclass
class StudentsConfig:
    """The population: registry names, per-student ``create_student`` keywords, and how many
    train at once (None: as many as the cluster fits)."""

    # the population: registry names (`popdistill.students.list_students()`), one Ray Train run
    # each
    names: list[str] = field(default_factory=lambda: ["lowres_tiny", "unet_tiny"])
    # per-student `create_student` keywords, e.g. {unet_tiny: {width: 16}}
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    # students trained at once (null: as many as the cluster's CPUs / GPUs fit)
    max_concurrent: int | None = None

    def validate(self) -> None:
        from popdistill.students import list_students

        if not self.names:
            raise UserError("names: at least one student is needed")
        valid = list_students()
        for i, name in enumerate(self.names):
            if name not in valid:
                raise UserError(f"names[{i}]: {name!r} is not one of {', '.join(valid)}")
        if len(set(self.names)) != len(self.names):
            raise UserError(f"names: duplicate names in {self.names}")
        unknown = sorted(set(self.models) - set(self.names))
        if unknown:
            raise UserError(f"models.{unknown[0]}: not one of the students {self.names}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise UserError(f"max_concurrent: must be >= 1, got {self.max_concurrent}")


@dataclass
class RunConfig:
    """A whole pipeline run. ``out``: the run directory (local path or bucket URI)."""

    data: DataConfig  # the training videos (their ground truth is never used to train)
    eval: DataConfig  # held-out videos with ground truth: the table's numbers
    # the videos generations >= 2 select from (None: ``data``): every generation-(k-1) student
    # predicts each of their frames; usually ``data`` and more (the thesis: more unlabeled data
    # grows more useful as the students grow stronger than their first teacher)
    later_data: DataConfig | None = None
    out: str = "runs/run"  # the run directory: stores, checkpoints, reports (path or bucket URI)
    name: str | None = None  # the MLflow parent run's name; default: the run directory's name
    generations: int = 2  # teacher -> students, then (k >= 2) students -> students
    teacher: TeacherConfig = section(TeacherConfig)  # the VideoPCA teacher of generation 1
    # which pseudo-labels each generation trains on
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    students: StudentsConfig = field(default_factory=StudentsConfig)  # the population
    training: TrainConfig = section(TrainConfig)  # how each student trains
    evalseg: EvalSegTrainConfig = section(EvalSegTrainConfig)  # EvalSeg-Net's training
    evaluation: EvalConfig = section(EvalConfig)  # how held-out masks are scored
    grid_frames: int = 6  # frames in each mask-grid PNG
    tracking: TrackingConfig = field(default_factory=TrackingConfig)  # MLflow
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)  # Ray

    def validate(self) -> None:
        if self.generations < 1:
            raise UserError(f"generations: must be >= 1, got {self.generations}")
        if not self.out:
            raise UserError("out: the run directory is required")
        if self.grid_frames < 0:
            raise UserError(f"grid_frames: must be >= 0, got {self.grid_frames}")
        if self.later_data is not None and self.selection.with_teacher:
            raise UserError("selection.with_teacher: generation 1's VideoPCA masks exist only for "
                            "`data`'s frames, not for `later_data`'s; unset one of them "
                            "(selection.keep_teacher works with later_data)")

    def candidates_data(self, generation: int) -> DataConfig:
        """The videos whose frames generation ``generation`` selects its labels from."""
        return self.later_data if generation >= 2 and self.later_data is not None else self.data

    @property
    def run_name(self) -> str:
        return self.name or Path(self.out.rstrip("/")).name or "run"

    # -- the library configs of each step ----------------------------------------------------
    def use_gpu(self) -> bool | None:
        return use_gpu(self.resources.gpu)

    def teacher_config(self, data: DataConfig, out: str, generation: int = 1) -> TeacherConfig:
        return fill(self.teacher, "teacher", data=data.path, format=data.format, out=out,
                    reader_options=data.reader_options, generation=generation,
                    select_top=self.selection.top, select_strata=self.selection.strata,
                    evaluate=True, actors=self.resources.actors,
                    actor_cpus=self.resources.actor_cpus)

    def train_configs(self, store: str, val_store: str | None, out: str) -> list[TrainConfig]:
        train = fill(self.training, "training", store=store, val_store=val_store, out=out,
                     use_gpu=self.use_gpu(), cpus_per_worker=self.resources.cpus_per_worker,
                     gpus_per_worker=self.resources.gpus_per_worker)
        return [fill(train, "training", student=s, name=s, model=self.students.models.get(s, {}))
                for s in self.students.names]

    def evalseg_config(self, store: str, students: list[str], out: str) -> EvalSegTrainConfig:
        return fill(self.evalseg, "evalseg", store=store, students=students, out=out,
                    ensemble=self.selection.ensemble, gpu=self.resources.gpu)

    def eval_config(self) -> EvalConfig:
        return self.evaluation

    def predict_config(self, checkpoint: str, data: DataConfig, out: str,
                       generation: int) -> PredictConfig:
        gpu = self.use_gpu()
        if gpu is None:
            from popdistill.train.launcher import cluster_has_gpus

            gpu = cluster_has_gpus()
        return load(PredictConfig, {
            "checkpoint": checkpoint, "data": data.path, "format": data.format, "out": out,
            "reader_options": data.reader_options, "generation": generation,
            "actors": self.resources.actors, "actor_cpus": self.resources.actor_cpus,
            "actor_gpus": self.resources.gpus_per_actor if gpu else 0.0, "torch_threads": 1,
            "chunk_frames": self.teacher.chunk_frames, "precision": self.training.precision,
        })


def parse_run_config(data: Any, out: str | None = None) -> RunConfig:
    """A validated RunConfig from plain values (``out`` overrides ``data["out"]``)."""
    if not isinstance(data, dict):
        raise UserError(f"config: expected a mapping, got {type(data).__name__}")
    data = dict(data)
    if out is not None:
        data["out"] = out
    for name in ("data", "eval"):
        if name not in data:
            raise UserError(f"{name}: required (path, format, ...)")
    return load(RunConfig, data)


def load_run_config(path: str | Path, out: str | None = None,
                    overrides: list[str] | None = None) -> RunConfig:
    """Read and validate a run config file, with ``overrides`` (``dotted.key=VALUE``, as
    ``popdistill run --set``) applied first; errors name the file and the dotted field."""
    from popdistill.config import apply_overrides, parse_yaml_file

    return parse_yaml_file(
        path, lambda data: parse_run_config(
            apply_overrides(data, overrides or []) if isinstance(data, dict) else data, out))


def resolved(cfg: RunConfig) -> dict[str, Any]:
    """The config as plain values (MLflow params, report.json, the manifest); the library
    sections without their job fields."""
    out = dataclasses.asdict(cfg)
    for name in SECTIONS:
        out[name] = settings(getattr(cfg, name))
    return out


SECTIONS = ("teacher", "training", "evalseg", "evaluation")


def section_defaults() -> dict[str, dict[str, Any]]:
    """Each section with a dataclass of defaults -> its fields' defaults: what a run directory
    written before a field existed is taken to have used (:meth:`Manifest.bind_config`)."""
    made = {f.name: f.default_factory() for f in dataclasses.fields(RunConfig)
            if f.default_factory is not dataclasses.MISSING}
    return {name: settings(value) if name in SECTIONS else dataclasses.asdict(value)
            for name, value in made.items() if dataclasses.is_dataclass(value)}
