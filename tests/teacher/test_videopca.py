"""VideoPCA teacher: PCA identity, colour model, filters, windows and end-to-end masks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from PIL import Image
from skimage.color import rgb2hsv
from skimage.filters import apply_hysteresis_threshold

from popdistill.config import load
from popdistill.errors import UserError
from popdistill.masks import hysteresis
from popdistill.teacher import colour
from popdistill.teacher.config import VideoPCAConfig
from popdistill.teacher.videopca import (
    TooFewFrames,
    VideoPCA,
    iter_videopca,
    videopca_video,
    videopca_window,
    window_spans,
)
from popdistill.teacher.videopca_ops import (
    background_basis,
    centre_prior,
    centred_gram_u8,
    foreground_cue,
    gaussian_blur,
    resize_frames,
)

RED = (230, 60, 40)


def moving_square(t: int = 16, s: int = 48, pan: float = 0.0, side: int = 14, seed: int = 0):
    """A blobby four-colour background with pixel noise, optionally panning, and a red square
    crossing the centre; returns (frames T x s x s x 3 uint8, square masks T x s x s)."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.random((s + 16, 2 * s)), 3)
    levels = np.digitize(field, np.quantile(field, [0.25, 0.5, 0.75]))
    palette = np.array([[60, 110, 90], [90, 140, 120], [70, 90, 130], [120, 130, 100]])
    canvas = (palette[levels] + rng.integers(-8, 9, levels.shape + (3,))).astype(np.uint8)
    frames = np.empty((t, s, s, 3), np.uint8)
    square = np.zeros((t, s, s), bool)
    for i in range(t):
        dx = int(round(pan * i))
        frames[i] = canvas[8 : 8 + s, dx : dx + s]
        y = s // 2 - side // 2 + (i % 5) - 2
        x = s // 4 + i * (s // 2 - side) // (t - 1)
        frames[i, y : y + side, x : x + side] = RED
        square[i, y : y + side, x : x + side] = True
    return frames, square


def iou(masks: np.ndarray, truth: np.ndarray) -> float:
    b = masks > 0.5
    return float(((b & truth).sum((1, 2)) / (b | truth).sum((1, 2))).mean())


# ----------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("pan", [0.0, 0.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_mask_finds_the_moving_square(pan, seed):
    frames, square = moving_square(pan=pan, seed=seed)
    masks = videopca_window(frames, VideoPCAConfig(size=48))
    assert masks.shape == (16, 48, 48) and masks.dtype == np.float32
    assert masks.min() >= 0.0 and masks.max() <= 1.0
    assert iou(masks, square) > 0.5
    assert masks[square].mean() > 0.9
    assert masks[~square].mean() < 0.1


def test_masks_in_unit_range_with_resize_and_window_scope():
    frames, square = moving_square(t=12, s=64)
    masks = videopca_window(frames, VideoPCAConfig(size=32, norm_scope="window"))
    assert masks.shape == (12, 32, 32)
    assert 0.0 <= masks.min() and masks.max() == pytest.approx(1.0)
    small = resize_frames(square[..., None].repeat(3, -1).astype(np.uint8) * 255, 32)[..., 0] > 127
    assert iou(masks, small.numpy()) > 0.4


def test_static_video_gives_zero_masks():
    frames = np.full((6, 32, 32, 3), 90, np.uint8)
    masks = videopca_window(frames, VideoPCAConfig(size=32))
    assert np.all(masks == 0.0)


# ----------------------------------------------------------------------------- PCA


def test_reconstruction_equals_rank_k_svd():
    rng = np.random.default_rng(0)
    data = torch.from_numpy(rng.normal(size=(10, 300))).to(torch.float32)
    data -= data.mean(1, keepdim=True)
    basis, lam = background_basis(data, 3)
    recon = basis @ (basis.T @ data)  # (D E E^T)^T with D = data^T
    u, s, vh = torch.linalg.svd(data.T.double(), full_matrices=False)
    svd_recon = (u[:, :3] * s[:3]) @ vh[:3]
    assert torch.allclose(recon.double().T, svd_recon, atol=1e-4)
    assert torch.allclose(lam, s[:3] ** 2, rtol=1e-4)
    # pixel-space directions U = D E / sqrt(lambda): orthonormal, same reconstruction
    pix = (data.T.double() @ basis.double()) / lam.sqrt()
    assert torch.allclose(pix.T @ pix, torch.eye(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(pix @ (pix.T @ data.T.double()), svd_recon, atol=1e-4)


@pytest.mark.parametrize("mode", ["int8", "chunked", "fallback"])
def test_centred_gram_u8_is_exact(mode, monkeypatch):
    from popdistill.teacher import videopca_ops

    if mode == "chunked":
        monkeypatch.setattr(videopca_ops, "_INT_MM_COLUMNS", 7)
    if mode == "fallback":
        monkeypatch.delattr(torch, "_int_mm")  # float64 path
    rng = np.random.default_rng(8)
    rows = rng.integers(0, 256, (6, 50), dtype=np.uint8)
    gram, means = centred_gram_u8(torch.from_numpy(rows))
    centred = rows - rows.mean(1, keepdims=True)
    np.testing.assert_allclose(gram.numpy(), centred @ centred.T, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(means.numpy(), rows.mean(1), rtol=1e-12)


def test_foreground_cue_is_reconstruction_error_norm():
    rng = np.random.default_rng(1)
    frames = torch.from_numpy(rng.integers(0, 256, (7, 5, 6, 3), dtype=np.uint8))
    d = frames.reshape(7, -1).double().T.numpy()  # pixels*3 x frames
    d = d - d.mean(0, keepdims=True)  # each frame's own scalar mean
    u, s, vh = np.linalg.svd(d, full_matrices=False)
    resid = (d - (u[:, :2] * s[:2]) @ vh[:2]).T.reshape(7, 5, 6, 3)
    err = np.sqrt((resid**2).sum(-1))
    expected = (err - err.min()) / (err.max() - err.min())
    np.testing.assert_allclose(foreground_cue(frames, 2).numpy(), expected, atol=1e-4)


# ----------------------------------------------------------------------------- colour model


def test_hsv_matches_skimage():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (4000, 3)).astype(np.float64)
    special = [
        [0, 0, 0],
        [255, 255, 255],
        [90, 90, 90],
        [255, 0, 0],
        [0, 255, 0],
        [0, 0, 255],
        [255, 255, 0],
        [0, 255, 255],
        [255, 0, 255],
        [10, 200, 200],
        [200, 10, 200],
    ]
    rgb = np.concatenate([rgb, special]) / 255.0
    ours = colour.rgb_to_hsv(torch.from_numpy(rgb).float()).double().numpy()
    ref = rgb2hsv(rgb[None])[0]
    dh = np.abs(ours[:, 0] - ref[:, 0])
    assert np.minimum(dh, 1 - dh).max() < 1e-5
    np.testing.assert_allclose(ours[:, 1:], ref[:, 1:], atol=1e-5)


def test_chroma_coordinates_follow_hsv_formula():
    rng = np.random.default_rng(3)
    rgb = rng.random((2000, 3))
    h, s, v = rgb2hsv(rgb[None])[0].T
    expected = np.stack(
        [(s * np.cos(2 * np.pi * h) + 1) / 2, (s * np.sin(2 * np.pi * h) + 1) / 2, v], 1
    )
    ours = colour.chroma_coordinates(torch.from_numpy(rgb).float()).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_bin_indices_hand_computed():
    bins = (100, 25, 10)
    rgb = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 0, 0], [255, 255, 255]])
    # red: x=1, y=.5, v=1 -> 99 + 100*(12 + 25*9); green: x=.25, y=.933 -> 25 + 100*(22 + 225)
    # blue: x=.25, y=.067 -> 25 + 100*(2 + 225); black: x=y=.5 (49.5 rounds to 50), v=0
    expected = [23799, 24725, 22725, 1250, 1250 + 100 * 25 * 9]
    assert colour.colour_bin_index(rgb.float() / 255, bins).tolist() == expected
    assert colour.colour_bin_index_u8(rgb.to(torch.uint8), bins).tolist() == expected


def test_pack_rgb_codes():
    rng = np.random.default_rng(7)
    rgb = torch.from_numpy(rng.integers(0, 256, (3, 5, 7, 3), dtype=np.uint8))
    expected = rgb[..., 0].int() | (rgb[..., 1].int() << 8) | (rgb[..., 2].int() << 16)
    assert torch.equal(colour.pack_rgb(rgb), expected)
    assert torch.equal(colour.pack_rgb(rgb[:, ::2]), expected[:, ::2])  # non-contiguous input
    assert colour.pack_rgb(torch.tensor([[1, 2, 3]], dtype=torch.uint8)).tolist() == [0x030201]


def test_lookup_table_matches_arithmetic():
    rng = np.random.default_rng(4)
    rgb = torch.from_numpy(rng.integers(0, 256, (20000, 3), dtype=np.uint8))
    bins = (100, 25, 10)
    direct = colour.colour_bin_index(rgb.float() / 255, bins)
    assert torch.equal(colour.colour_bin_index_u8(rgb, bins), direct)



def test_lookup_table_is_kept_on_disk_read_back_and_rebuilt_when_bad(tmp_path, monkeypatch):
    bins = (4, 3, 2)
    built = []

    def build(b):
        built.append(b)
        return real_build(b)

    real_build = colour.build_colour_lut
    monkeypatch.setattr(colour, "build_colour_lut", build)
    lut_of = colour.colour_lut.__wrapped__  # past the per-process lru_cache
    monkeypatch.setenv("POPDISTILL_LUT_CACHE", str(tmp_path / "cache"))
    path = colour.lut_cache_path(bins)
    assert path.parent == tmp_path / "cache" and path.name.startswith("colour-lut-4x3x2-")

    first = lut_of(bins)  # built and kept
    assert len(built) == 1 and path.is_file()
    assert torch.equal(lut_of(bins), first) and len(built) == 1  # read back, not rebuilt
    rgb = torch.from_numpy(np.random.default_rng(5).integers(0, 256, (5000, 3), dtype=np.uint8))
    assert torch.equal(first.index_select(0, colour.pack_rgb(rgb)).to(torch.int32),
                       colour.colour_bin_index(rgb.float() / 255, bins))

    path.write_bytes(b"not a table")  # unreadable: rebuilt and kept again
    assert torch.equal(lut_of(bins), first) and len(built) == 2
    np.save(path, np.full(1 << 24, 99, np.int16))  # a table, but not of these bins
    assert torch.equal(lut_of(bins), first) and len(built) == 3
    assert torch.equal(lut_of(bins), first) and len(built) == 3
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]

    monkeypatch.setenv("POPDISTILL_LUT_CACHE", str(path / "under-a-file"))  # cannot be written
    assert torch.equal(lut_of(bins), first) and len(built) == 4
    monkeypatch.setenv("POPDISTILL_LUT_CACHE", "")  # no file at all
    assert colour.lut_cache_path(bins) is None
    assert torch.equal(lut_of(bins), first) and len(built) == 5
    monkeypatch.setenv("POPDISTILL_LUT_CACHE", str(tmp_path / "cache"))

    def no_source(obj):
        raise OSError("could not get source code")

    monkeypatch.setattr(colour.inspect, "getsource", no_source)  # installed without sources
    assert colour.lut_cache_path(bins) is None


def test_colour_scores_hand_computed():
    index = torch.tensor([0, 0, 1, 1, 1, 2])
    fg = torch.tensor([True, True, True, False, False, False])
    h_fg, h_bg = colour.colour_histograms(index, fg, 3)
    assert h_fg.tolist() == [2, 1, 0] and h_bg.tolist() == [0, 2, 1]
    # counts + 1 smoothing on background: fg [2,1,0], bg [1,3,2]
    raw = colour.colour_scores(index, fg, 3, bg_smoothing=1.0, normalise=False)
    np.testing.assert_allclose(raw.numpy(), [2 / 3, 2 / 3, 1 / 4, 1 / 4, 1 / 4, 0.0], rtol=1e-6)
    # normalised: fg [2,1,0]/3, bg [1,3,2]/6
    p = colour.colour_scores(index, fg, 3, bg_smoothing=1.0, normalise=True)
    a, b = (2 / 3) / (2 / 3 + 1 / 6), (1 / 3) / (1 / 3 + 1 / 2)
    np.testing.assert_allclose(p.numpy(), [a, a, b, b, b, 0.0], rtol=1e-6)


# ----------------------------------------------------------------------------- filters


@pytest.mark.parametrize("size,sigma,truncate", [(32, 2.0, 4.0), (20, 1.3, 3.0), (8, 3.0, 4.0)])
def test_blur_matches_scipy(size, sigma, truncate):
    x = torch.rand(3, size, size + 4)
    ref = ndi.gaussian_filter(x.numpy(), (0, sigma, sigma), truncate=truncate)
    np.testing.assert_allclose(gaussian_blur(x, sigma, truncate).numpy(), ref, atol=1e-5)


def test_centre_prior():
    prior = centre_prior(31, 45, 1 / 3)
    assert prior[15, 22] == pytest.approx(1.0)
    assert prior[15, 22 + 10] == pytest.approx(np.exp(-0.5 * (10 / (31 / 3)) ** 2), rel=1e-5)


def test_hysteresis_is_8_connected_in_plane_only():
    low = np.zeros((2, 6, 6), bool)
    high = np.zeros((2, 6, 6), bool)
    low[0, 0, 0] = low[0, 1, 1] = low[0, 2, 2] = True  # diagonal chain
    high[0, 2, 2] = True
    low[0, 4:, 4:] = True  # no high pixel: dropped
    low[1, 0, 0] = low[1, 1, 1] = True  # under frame 0's chain, no high pixel in frame 1
    out = hysteresis(high, low)
    expected = np.zeros_like(low)
    expected[0, 0, 0] = expected[0, 1, 1] = expected[0, 2, 2] = True
    assert np.array_equal(out, expected)


def test_hysteresis_matches_skimage_per_frame():
    rng = np.random.default_rng(5)
    x = ndi.gaussian_filter(rng.random((4, 40, 40)), (0, 2, 2))
    lo, hi = np.quantile(x, 0.6), np.quantile(x, 0.9)
    out = hysteresis(x > hi, x > lo)
    ref = np.stack([apply_hysteresis_threshold(f, lo, hi) for f in x])
    assert np.array_equal(out, ref)


def test_resize_is_antialiased_and_identity_at_size():
    rng = np.random.default_rng(6)
    frames = rng.integers(0, 256, (2, 64, 48, 3), dtype=np.uint8)
    small = resize_frames(frames, 16).numpy()
    assert small.shape == (2, 16, 16, 3)
    ref = np.asarray(Image.fromarray(frames[1]).resize((16, 16), Image.Resampling.BILINEAR))
    assert np.abs(small[1].astype(int) - ref).max() <= 1  # PIL's bilinear is antialiased
    assert np.array_equal(resize_frames(frames[:, :48], 48).numpy(), frames[:, :48])


# ----------------------------------------------------------------------------- windows


def test_window_spans_merge_short_tail():
    cfg = VideoPCAConfig(window=8, min_window=4)
    assert window_spans(8, cfg) == [(0, 8)]
    assert window_spans(11, cfg) == [(0, 11)]  # 3-frame tail merged
    assert window_spans(12, cfg) == [(0, 8), (8, 12)]
    assert window_spans(20, cfg) == [(0, 8), (8, 16), (16, 20)]
    cfg = VideoPCAConfig(window=8, stride=4, min_window=4)
    assert window_spans(12, cfg) == [(0, 8), (4, 12)]
    assert window_spans(14, cfg) == [(0, 8), (4, 12), (8, 14)]
    cfg = VideoPCAConfig(window=8, stride=4, min_window=6)
    assert window_spans(13, cfg) == [(0, 8), (4, 13)]  # (8, 13) would be under 6 frames
    assert window_spans(5, cfg) == [(0, 5)]


def test_overlapping_windows_average_and_cover_every_frame():
    frames, _ = moving_square(t=20, s=32)
    cfg = VideoPCAConfig(size=32, window=8, stride=4, min_window=4)
    out = videopca_video(frames, cfg)
    assert out.shape == (20, 32, 32)
    total, hits = np.zeros((20, 32, 32)), np.zeros(20)
    for a, b in window_spans(20, cfg):
        total[a:b] += videopca_window(frames[a:b], cfg)
        hits[a:b] += 1
    assert hits.min() >= 1
    np.testing.assert_allclose(out, total / hits[:, None, None], atol=1e-6)


def test_streamed_batches_equal_whole_array():
    frames, _ = moving_square(t=21, s=32)
    cfg = VideoPCAConfig(size=32, window=8, stride=6, min_window=4)
    whole = videopca_video(frames, cfg)
    batches = [frames[0:5], frames[5:6], frames[6], frames[7:19], frames[19:]]
    parts = list(iter_videopca(iter(batches), cfg))
    assert sum(len(p) for p in parts) == 21
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-6)
    assert np.array_equal(VideoPCA(cfg)(frames), whole)


def test_too_few_frames():
    cfg = VideoPCAConfig(size=16)
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    with pytest.raises(TooFewFrames) as err:
        videopca_window(frames, cfg)
    assert err.value.n_frames == 3 and err.value.needed == 4
    with pytest.raises(TooFewFrames):
        videopca_video(iter([frames[:2], frames[2:]]), cfg)
    with pytest.raises(TooFewFrames):
        videopca_video(np.zeros((0, 16, 16, 3), np.uint8), cfg)
    assert videopca_video(np.zeros((4, 16, 16, 3), np.uint8), cfg).shape == (4, 16, 16)


def test_config_loads_and_validates():
    cfg = load(VideoPCAConfig, {"size": 64, "bins": [10, 10, 5], "norm_scope": "window"})
    assert cfg.bins == (10, 10, 5) and cfg.blur_sigma == pytest.approx(5 * 64 / 300)
    with pytest.raises(UserError, match="norm_scope"):
        load(VideoPCAConfig, {"norm_scope": "video"})
    with pytest.raises(UserError, match="window"):
        load(VideoPCAConfig, {"window": 3})
    with pytest.raises(UserError, match="stride"):
        load(VideoPCAConfig, {"window": 8, "stride": 9})
