"""Per-architecture cases: the papers' full-size widths (counted on the meta device, so no
memory or time is spent), the registry, and a slow full-size forward check."""

from __future__ import annotations

import pytest
import torch

from popdistill.errors import UserError
from popdistill.students import (
    create_evalseg,
    create_student,
    list_evalseg,
    list_students,
    parameter_count,
    register_student,
)
from popdistill.students.dilateunet import DilatedCenter

FULL = [n for n in list_students() if not n.endswith("_tiny")]


def _meta(name: str, **kw):
    with torch.device("meta"):
        return create_student(name, **kw)


def cbr(cin: int, cout: int, k: int = 3) -> int:
    """Parameters of conv (no bias) + batch norm (weight, bias)."""
    return k * k * cin * cout + 2 * cout


def dense(cin: int, growth: int, cout: int, n: int = 4) -> int:
    return sum(cbr(cin + i * growth, growth) for i in range(n)) + cbr(cin + n * growth, cout, 1)


def test_unet_parameter_count_by_hand():
    ch, centre, total, cin = (32, 64, 128, 256, 512), 1024, 0, 3
    for c in ch:
        total += cbr(cin, c) + cbr(c, c)
        cin = c
    total += cbr(512, centre) + cbr(centre, centre)
    prev = centre
    for c in reversed(ch):
        total += cbr(prev + c, c) + cbr(c, c)
        prev = c
    total += 32 + 1  # 1x1 head with bias
    assert parameter_count(_meta("unet")) == total == 31_448_705


def test_dilateunet_centre_is_six_dilated_512_convs():
    model = _meta("dilateunet")
    centre = model.encoder.stages[-1]
    assert isinstance(centre, DilatedCenter)
    assert [c[0].dilation for c in centre.convs] == [(d, d) for d in (1, 2, 4, 8, 16, 32)]
    assert [c[0].out_channels for c in centre.convs] == [512] * 6
    assert [c[0].padding for c in centre.convs] == [(d, d) for d in (1, 2, 4, 8, 16, 32)]
    unet_centre = cbr(512, 1024) + cbr(1024, 1024) + cbr(1024 + 512, 512)
    dilate_centre = cbr(512, 512) * 6 + cbr(512 + 512, 512)
    assert parameter_count(_meta("unet")) - parameter_count(model) == unet_centre - dilate_centre


def test_dilated_centre_sum_and_last_merges():
    torch.manual_seed(0)
    centre = DilatedCenter(4, 4, (1, 2), "sum").eval()
    x = torch.rand(1, 4, 8, 8)
    a = centre.convs[0](x)
    b = centre.convs[1](a)
    torch.testing.assert_close(centre(x), a + b)
    centre.merge = "last"
    torch.testing.assert_close(centre(x), b)


def test_denseunet_parameter_count_by_hand():
    growth, ch = (12, 24, 48, 64, 128), (32, 64, 128, 256, 512)
    total, cin = 0, 3
    for g, c in zip(growth, ch):
        total += dense(cin, g, c)
        cin = c
    prev = ch[-1]
    for g, c in zip(growth[-2::-1], ch[-2::-1]):
        total += dense(prev + c, g, c)
        prev = c
    total += 32 + 1
    model = _meta("denseunet")
    assert parameter_count(model) == total
    assert len(model.encoder.stages) == 5  # 4 poolings between 5 levels


def test_lowres_parameter_count_by_hand_and_paper_layout():
    branches = sum(cbr(c, 256) + cbr(256, 256, 5) for c in (3, 2, 1))
    trunk = cbr(768, 256) + cbr(256, 256, 5) + cbr(256, 256) + cbr(256, 256, 5) + cbr(256, 64, 5)
    fc = 64 * 32 * 32 * 1024 + 1024
    model = _meta("lowres")
    assert (model.input_size, model.output_size) == (128, 32)
    assert parameter_count(model) == branches + trunk + fc
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3 * 2 + 5  # seven conv layers deep; branches run in parallel


def test_lowres_branches_receive_rgb_gradients_and_hue():
    model = create_student("lowres_tiny")
    seen = {}
    model.encoder.body.register_forward_pre_hook(lambda _m, args: seen.update(inputs=args[0]))
    s = model.input_size
    img = torch.zeros(1, 3, s, s)
    img[0, 0] = torch.arange(s, dtype=torch.float32) / s  # red ramp along the width
    model(img)
    rgb, grad, hue = seen["inputs"]
    torch.testing.assert_close(rgb, img)
    assert grad.shape == (1, 2, s, s) and hue.shape == (1, 1, s, s)
    # grey = 0.299 R: the interior Ix is 0.299 per pixel step, Iy is 0; pure red has hue 0.
    torch.testing.assert_close(grad[0, 0, :, 1:-1], torch.full((s, s - 2), 0.299 / s))
    torch.testing.assert_close(grad[0, 1], torch.zeros(s, s))
    torch.testing.assert_close(hue, torch.zeros(1, 1, s, s))
    img[0, 1] = img[0, 0]  # red + green in equal parts: yellow, hue 1/6 except at black
    model(img)
    torch.testing.assert_close(seen["inputs"][2][0, 0, :, 1:], torch.full((s, s - 1), 1 / 6))


def test_evalseg_parameter_count_by_hand():
    branches = sum(cbr(c, 256) + cbr(256, 256, 5) for c in (3, 1, 3))
    trunk = cbr(768, 256) + cbr(256, 256, 5) + cbr(256, 256) + cbr(256, 256, 5) + cbr(256, 64, 5)
    head = 64 * 32 * 32 * 512 + 512 + 512 + 1
    with torch.device("meta"):
        model = create_evalseg("evalseg")
    assert parameter_count(model) == branches + trunk + head


def test_fconv_has_no_skips():
    model = _meta("fconv")
    widths = [b.stage[0][0].in_channels for b in model.decoder.blocks]
    assert widths == [512, 256, 128, 64]


def test_timm_unet_uses_the_timm_backbone():
    import timm

    model = _meta("timm_unet_resnet18")
    with torch.device("meta"):
        backbone = timm.create_model("resnet18", pretrained=False, features_only=True)
    assert parameter_count(model.encoder) == parameter_count(backbone) == 11_176_512
    assert model.encoder.out_channels == (3, 64, 64, 128, 256, 512)


def test_timm_unet_bad_encoder_or_decoder_widths_fail_clearly():
    with pytest.raises(UserError, match="unknown timm model 'resnet181'.*resnet18"):
        create_student("timm_unet_tiny", encoder_name="resnet181")
    with pytest.raises(UserError, match="decoder_channels.*5 decoder widths"):
        create_student("timm_unet_tiny", decoder_channels=(8, 8))


def test_unknown_student_lists_valid_names():
    with pytest.raises(UserError) as err:
        create_student("unet_tyni")
    msg = str(err.value)
    assert "'unet_tyni'" in msg
    for name in list_students():
        assert name in msg


def test_unknown_config_field_and_bad_value_name_the_field():
    with pytest.raises(UserError, match="unknown field 'widht'.*width"):
        create_student("lowres_tiny", widht=8)
    with pytest.raises(UserError, match="center_merge"):
        create_student("dilateunet_tiny", center_merge="mean")
    with pytest.raises(UserError, match="input_size"):
        create_student("lowres_tiny", input_size=30)


def test_list_patterns_and_duplicate_registration():
    assert list_students("unet*") == ["unet", "unet_tiny"]
    assert list_students("timm_unet_*") == [
        "timm_unet_resnet10t",
        "timm_unet_resnet18",
        "timm_unet_tiny",
    ]
    assert list_evalseg() == ["evalseg", "evalseg_tiny"]
    with pytest.raises(ValueError, match="registered twice"):

        @register_student
        def unet(**kw):  # noqa: F811 - the clash is the point
            raise AssertionError


def test_report_parameter_counts(capsys):
    rows = [(n, parameter_count(_meta(n))) for n in list_students()]
    with torch.device("meta"):
        rows += [(n, parameter_count(create_evalseg(n))) for n in list_evalseg()]
    with capsys.disabled():
        print("\nparameters per registered model:")
        for name, count in rows:
            print(f"  {name:22s} {count:>12,d}")
    counts = dict(rows)
    for name in FULL:
        family = name.rsplit("_", 1)[0] if name.startswith("timm") else name
        tiny = f"{family}_tiny" if not name.startswith("timm") else "timm_unet_tiny"
        assert counts[name] > 10 * counts[tiny]


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL)
def test_full_size_forward_shapes(name):
    torch.manual_seed(0)
    model = create_student(name).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, model.input_size, model.input_size))
    assert out.shape == (1, 1, model.output_size, model.output_size)
    assert 0.0 <= out.min() and out.max() <= 1.0


@pytest.mark.slow
def test_full_size_evalseg_forward_shape():
    model = create_evalseg("evalseg").eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 128, 128), torch.rand(2, 1, 128, 128))
    assert out.shape == (2,)
