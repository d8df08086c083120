"""Device and precision of the networks (popdistill.students.device), on the CPU."""

from __future__ import annotations

import pytest
import torch

from popdistill.students import create_student
from popdistill.students.device import (
    autocast,
    local_device,
    prepare_input,
    prepare_model,
    resolve_precision,
)

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_precision_is_bf16_on_cuda_only():
    assert resolve_precision("auto", CUDA) == "bf16"
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16" and resolve_precision("fp32", CUDA) == "fp32"
    with pytest.raises(ValueError, match="fp16.*auto, fp32, bf16"):
        resolve_precision("fp16", CPU)


def test_autocast_runs_the_forward_in_bf16_and_fp32_leaves_it_alone():
    model = create_student("unet_tiny").eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        with autocast(CPU, "fp32"):
            full = model(x)
        with autocast(CPU, "bf16"):
            half = model(x)
    assert full.dtype == torch.float32 and half.dtype == torch.bfloat16
    assert torch.allclose(full, half.float(), atol=0.05)
    # channels_last only where bf16 runs on CUDA: on a CPU inputs and weights keep their layout
    assert prepare_input(x, CPU, "bf16").is_contiguous()
    convs = [p for p in prepare_model(model, CPU, "bf16").parameters() if p.ndim == 4]
    assert convs and all(p.is_contiguous() for p in convs)


def test_local_device_follows_resources_gpu():
    assert local_device("no") == CPU
    expected = CUDA if torch.cuda.is_available() else CPU
    assert local_device("auto").type == expected.type
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="resources.gpu is 'yes'"):
            local_device("yes")
    with pytest.raises(ValueError, match="maybe"):
        local_device("maybe")
