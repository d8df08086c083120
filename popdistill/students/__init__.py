"""Student segmenters (the population), Multi-Net, EvalSeg-Net and model checkpoints.

``create_student(name, **config_overrides)`` builds any registered student;
``list_students("*_tiny")`` lists the test-sized variants.
"""

from popdistill.students._registry import (
    create_evalseg,
    create_student,
    list_evalseg,
    list_students,
    register_evalseg,
    register_student,
)
from popdistill.students.base import (
    StudentConfig,
    StudentNet,
    parameter_count,
    resize_to,
    to_float_images,
)

__all__ = [
    "create_student",
    "list_students",
    "register_student",
    "create_evalseg",
    "list_evalseg",
    "register_evalseg",
    "StudentConfig",
    "StudentNet",
    "parameter_count",
    "resize_to",
    "to_float_images",
    "MultiNet",
    "multinet_mask",
    "EvalSegNet",
    "quality_target",
    "save_checkpoint",
    "load_checkpoint",
]

# Built-in architectures register themselves on import; one module per architecture.
from popdistill.students import (  # noqa: E402,F401
    denseunet,
    dilateunet,
    fconv_net,
    lowres_net,
    timm_unet,
    unet,
)
from popdistill.students.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from popdistill.students.evalseg_net import EvalSegNet, quality_target  # noqa: E402
from popdistill.students.multinet import MultiNet, multinet_mask  # noqa: E402
