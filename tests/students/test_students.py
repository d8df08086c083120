"""The shared student tester: every registered ``*_tiny`` variant goes through the same cases."""

from __future__ import annotations

import pytest
import torch

from popdistill.students import StudentNet, create_student, list_students

TINY = list_students("*_tiny")


def _images(model: StudentNet, batch: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, model.input_size, model.input_size, generator=g)


def _target(size: int, batch: int) -> torch.Tensor:
    """A centred square covering the middle half of the mask."""
    t = torch.zeros(batch, 1, size, size)
    t[..., size // 4 : size - size // 4, size // 4 : size - size // 4] = 1.0
    return t


def test_tiny_variants_cover_every_architecture():
    assert set(TINY) == {
        "lowres_tiny",
        "fconv_tiny",
        "unet_tiny",
        "denseunet_tiny",
        "dilateunet_tiny",
        "timm_unet_tiny",
    }


@pytest.mark.parametrize("name", TINY)
class TestEveryTinyStudent:
    def test_forward_gives_soft_masks_at_output_size(self, name):
        torch.manual_seed(0)
        model = create_student(name)
        assert isinstance(model, StudentNet) and model.registry_name == name
        out = model(_images(model))
        assert out.shape == (3, 1, model.output_size, model.output_size)
        assert torch.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
        # The mask depends on the image: different images, different masks.
        assert not torch.allclose(out[0], out[1])

    def test_predict_accepts_uint8_and_any_size_and_restores_mode(self, name):
        torch.manual_seed(0)
        model = create_student(name)
        g = torch.Generator().manual_seed(1)
        images = torch.randint(0, 256, (2, 3, 40, 56), dtype=torch.uint8, generator=g)
        model.train()
        masks = model.predict(images)
        assert model.training
        assert not masks.requires_grad
        assert masks.shape == (2, 1, model.output_size, model.output_size)
        assert masks.min() >= 0.0 and masks.max() <= 1.0
        torch.testing.assert_close(masks, model.predict(images.float() / 255.0))

    def test_predict_is_per_image_in_eval_mode(self, name):
        torch.manual_seed(0)
        model = create_student(name)
        images = _images(model, batch=3)
        batch = model.predict(images)
        single = torch.cat([model.predict(images[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-4)

    def test_predict_resized_gives_image_size(self, name):
        torch.manual_seed(0)
        model = create_student(name)
        images = torch.rand(2, 3, 48, 80)
        masks = model.predict_resized(images)
        assert masks.shape == (2, 1, 48, 80)
        assert masks.min() >= 0.0 and masks.max() <= 1.0

    def test_adam_steps_lower_mse_on_a_fixed_batch(self, name):
        torch.manual_seed(0)
        model = create_student(name)
        images = _images(model, batch=4)
        target = _target(model.output_size, 4)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        losses = []
        for _ in range(3):
            loss = torch.nn.functional.mse_loss(model(images), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        final = torch.nn.functional.mse_loss(model(images), target).item()
        assert final < losses[0], (losses, final)

    def test_config_rebuilds_the_same_architecture(self, name):
        model = create_student(name)
        again = create_student(name, **model.config_dict())
        assert again.config == model.config
        assert [p.shape for p in again.parameters()] == [p.shape for p in model.parameters()]
