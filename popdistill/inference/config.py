"""The students' inference config, importable without torch (``popdistill predict --help``,
the pipeline's predict steps): :class:`PredictConfig` of
:func:`popdistill.inference.predict.run_predict`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from popdistill.choices import PRECISIONS
from popdistill.config import choice
from popdistill.errors import UserError
from popdistill.resources import ResourcesConfig

__all__ = ["PredictConfig", "DECODE_MODES", "IMAGE_CODECS"]

# where a masking pass decodes the frames (popdistill.inference.stream): in the actor that masks
# them (no frames cross Ray), or in Ray read tasks that send them to the actors (an actor that
# should not wait on decoding: a GPU's)
DECODE_MODES = ("actor", "tasks")
# how a store keeps each frame (popdistill.data.schema): the image file's own bytes where the
# frame is one unchanged, else raw; always raw; or that, else JPEG (quality 95, 4:4:4, lossy: frames
# of videos at scale)
IMAGE_CODECS = ("source", "raw", "jpeg")


@dataclass
class PredictConfig:
    """One prediction run. ``out`` is its directory (local path or pyarrow URI)."""

    checkpoint: str = ""
    data: str = ""
    format: str = "davis"
    out: str = ""
    reader_options: dict[str, Any] = field(default_factory=dict)
    export_png: str | None = None
    batch_size: int = 32
    chunk_frames: int = 128
    actors: int = ResourcesConfig.actors
    actor_cpus: float = ResourcesConfig.actor_cpus
    actor_gpus: float = 0.0
    read_cpus: float = 0.25
    # where frames are decoded: auto (tasks when the actors have GPUs, else actor), actor, tasks
    decode: str = choice("auto", ("auto", *DECODE_MODES))
    torch_threads: int = 2
    precision: str = choice("auto", PRECISIONS)  # popdistill.students.device
    generation: int | None = None  # None: the checkpoint's config "generation" + 1, else 2

    def validate(self) -> None:
        for name in ("checkpoint", "data", "out"):
            if not getattr(self, name):
                raise UserError(f"{name}: required")
        for name in ("batch_size", "chunk_frames", "actors", "torch_threads"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}: {getattr(self, name)} must be >= 1")
        if self.generation is not None and self.generation < 1:
            raise UserError(f"generation: {self.generation} must be >= 1")
        if self.actor_cpus < 0 or self.actor_gpus < 0 or self.read_cpus < 0:
            raise UserError("actor_cpus, actor_gpus, read_cpus: must be >= 0")

    def decode_mode(self) -> str:
        """:attr:`decode`, ``auto`` resolved."""
        if self.decode != "auto":
            return self.decode
        return "tasks" if self.actor_gpus > 0 else "actor"
