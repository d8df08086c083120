"""Weight averaging (popdistill.train.ema), without Ray."""

from __future__ import annotations

import pytest
import torch

from popdistill.students import create_student
from popdistill.train.ema import averaged_module, make_ema, validate_decay


def test_ema_follows_the_recursion_over_steps_and_buffers():
    """After each step the averaged weights are d avg + (1 - d) w, starting from the first step's
    weights; BatchNorm running statistics are averaged the same way."""
    torch.manual_seed(0)
    model = create_student("unet_tiny")
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    decay = 0.8
    ema = make_ema(model, decay)
    expected = None
    x, y = torch.rand(4, 3, 64, 64), torch.rand(4, 1, 64, 64)
    for _ in range(3):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update_parameters(model)
        now = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
        expected = now if expected is None else {k: decay * expected[k] + (1 - decay) * now[k] for k in now}
    averaged = averaged_module(model, ema).state_dict()
    assert any("running_mean" in k for k in expected)
    for k, v in expected.items():
        assert torch.allclose(averaged[k], v, atol=1e-6), k
    assert not torch.equal(next(ema.module.parameters()), next(model.parameters()))
    assert int(ema.n_averaged) == 3


def test_decay_zero_is_off_and_bad_decays_name_the_field():
    model = create_student("unet_tiny")
    assert make_ema(model, 0.0) is None
    assert averaged_module(model, None) is model
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="ema_decay"):
            validate_decay(bad)
