"""Checkpoints rebuild their model from plain values and resume exactly."""

from __future__ import annotations

import pytest
import torch

from popdistill.errors import UserError
from popdistill.students import (
    create_evalseg,
    create_student,
    list_students,
    load_checkpoint,
    save_checkpoint,
)


def _train_step(model, opt, inputs):
    loss = model(*inputs).square().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def _inputs(model):
    g = torch.Generator().manual_seed(3)
    s = model.input_size
    images = torch.rand(2, 3, s, s, generator=g)
    if model.registry_kind == "evalseg":
        return images, torch.rand(2, 1, s, s, generator=g)
    return (images,)


@pytest.mark.parametrize("name", [*list_students("*_tiny"), "evalseg_tiny"])
def test_round_trip_gives_the_same_outputs(tmp_path, name):
    torch.manual_seed(0)
    model = create_evalseg(name) if name.startswith("evalseg") else create_student(name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs = _inputs(model)
    _train_step(model, opt, inputs)  # moves weights and batch-norm statistics off their init
    path = save_checkpoint(
        tmp_path / "ck" / "model.pt", model, opt, step=7, config={"lr": 1e-3, "betas": (0.9, 0.99)}
    )
    loaded, payload = load_checkpoint(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert loaded.registry_name == name
    assert payload["step"] == 7 and payload["config"] == {"lr": 1e-3, "betas": [0.9, 0.99]}
    model.eval()
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(*inputs), model(*inputs), rtol=0, atol=0)


def test_resume_continues_exactly(tmp_path):
    torch.manual_seed(0)
    model = create_student("unet_tiny", center_channels=32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs = _inputs(model)
    _train_step(model, opt, inputs)
    save_checkpoint(tmp_path / "a.pt", model, opt, step=1)
    resumed, payload = load_checkpoint(tmp_path / "a.pt")
    assert resumed.config.center_channels == 32
    opt2 = torch.optim.Adam(resumed.parameters(), lr=1e-3)
    opt2.load_state_dict(payload["optimizer"])
    _train_step(model, opt, inputs)
    _train_step(resumed, opt2, inputs)
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_non_plain_config_is_refused(tmp_path):
    model = create_student("unet_tiny")
    with pytest.raises(TypeError, match=r"config\.when: object"):
        save_checkpoint(tmp_path / "x.pt", model, config={"when": object()})
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(ValueError, match="create_student"):
        save_checkpoint(tmp_path / "y.pt", torch.nn.Linear(2, 2))


class _Payload:
    pass


def test_files_needing_arbitrary_unpickling_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"kind": "student", "name": "unet_tiny", "x": _Payload()}, path)
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(path)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(UserError, match="not a popdistill model checkpoint"):
        load_checkpoint(path)
