"""Video experts: phase correlation, the foreground cue, what each expert encodes, availability."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.registration import phase_cross_correlation

from popdistill.cli import main as cli_main
from popdistill.errors import UserError
from popdistill.retrieval.corpus import read_world
from popdistill.retrieval.experts import (
    ExpertConfig,
    extract_experts,
    list_experts,
    phase_shifts,
    video_cues,
)

COMPASS = ("right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right")


def _texture(size: int, seed: int) -> np.ndarray:
    """Smooth, low-saturation grey-ish texture (H x W x 3 float in [0, 1])."""
    rng = np.random.default_rng(seed)
    grey = ndi.gaussian_filter(rng.standard_normal((size, size)), 1.0)
    grey = 0.5 + 0.2 * grey / grey.std()
    return np.repeat(grey[..., None], 3, axis=2).clip(0, 1)


def _video(colour=(0.85, 0.1, 0.1), velocity=(1.5, 0.0), pan=(0, 0), shape=(7, 7), t=32,
           size=64, seed=0) -> np.ndarray:
    """A rectangle of ``colour`` moving at ``velocity`` (dx, dy px/frame) over a texture seen by
    a camera panning by whole pixels ``pan`` (dx, dy) per frame."""
    canvas = _texture(3 * size, seed)
    frames = np.empty((t, size, size, 3))
    start = np.array([size / 2, size / 2]) - np.array(velocity) * (t - 1) / 2
    for i in range(t):
        x0, y0 = size + pan[0] * i - pan[0] * t // 2, size + pan[1] * i - pan[1] * t // 2
        frame = canvas[y0 : y0 + size, x0 : x0 + size].copy()
        cx, cy = start + np.array(velocity) * i
        hx, hy = shape
        frame[int(cy - hy) : int(cy + hy), int(cx - hx) : int(cx + hx)] = colour
        frames[i] = frame
    return (frames * 255).round().astype(np.uint8)


def test_phase_shifts_match_skimage_and_known_rolls():
    base = _texture(64, 1)[..., 0]
    shifts = [(3, -5), (-7, 2), (0, 0), (12, 9)]
    moved = np.stack([np.roll(base, (-dy, -dx), axis=(0, 1)) for dy, dx in shifts])
    got = phase_shifts(np.repeat(base[None], len(shifts), 0), moved)
    assert got.tolist() == [list(s) for s in shifts]
    for (dy, dx), mov in zip(got, moved):
        assert phase_cross_correlation(base, mov)[0].tolist() == [dy, dx]


def test_foreground_cue_finds_the_moving_object_under_camera_pan():
    frames = _video(velocity=(1.5, 0.0), pan=(2, -1))
    cues = video_cues(frames, ExpertConfig())
    assert (cues.camera == [-1, 2]).all()  # (dy, dx) per frame = the pan
    truth = np.zeros((len(cues.sampled), 64, 64), bool)
    for k, i in enumerate(cues.sampled):
        truth[k] = (np.abs(frames[i].astype(int) - [217, 26, 26]) < 3).all(-1)
    inter, union = (cues.foreground & truth).sum(), (cues.foreground | truth).sum()
    assert inter / truth.sum() > 0.9  # nearly all of the object; a 1-2 px halo around it
    assert inter / union > 0.45


@pytest.mark.parametrize("velocity, word", [((1.5, 0.0), "right"), ((0.0, -1.5), "up"),
                                            ((-1.2, 1.2), "down-left"), ((-1.5, 0.0), "left")])
def test_motion_expert_recovers_the_object_direction_and_the_pan(velocity, word):
    frames = _video(velocity=velocity, pan=(1, 0))
    feats = extract_experts({"v": frames}, ExpertConfig(experts=("motion",))).features["motion"][0]
    unit = feats[:2]
    angle = np.degrees(np.arctan2(unit[1], unit[0]) - np.arctan2(velocity[1], velocity[0]))
    assert abs((angle + 180) % 360 - 180) < 20
    assert COMPASS[int(np.round(np.degrees(np.arctan2(unit[1], unit[0])) / 45)) % 8] == word
    speed = feats[2]  # % of the frame side per frame
    assert speed == pytest.approx(100 * np.hypot(*velocity) / 64, rel=0.3)
    assert np.argmax(feats[3:11]) == COMPASS.index(word)
    cam = feats[19:21]  # (dx, dy) camera velocity, % per frame
    assert cam == pytest.approx([100 / 64, 0.0], abs=1e-6)


def test_colour_expert_histogram_of_the_moving_region_peaks_at_the_object_hue():
    cfg = ExpertConfig(experts=("colour",))
    videos = {"red": _video(colour=(0.85, 0.1, 0.1)), "green": _video(colour=(0.1, 0.7, 0.15)),
              "blue": _video(colour=(0.1, 0.2, 0.9))}
    feats = extract_experts(videos, cfg).features["colour"]
    n_bins = cfg.hue_bins * 4 + 3
    assert feats.shape == (3, 2 * n_bins)
    hues = {"red": 0.0, "green": 0.35, "blue": 0.63}  # HSV hue of each colour
    for row, name in zip(feats, videos):
        peak = int(np.argmax(row[n_bins:]))
        assert peak // 4 == int(hues[name] * cfg.hue_bins)
        assert row[n_bins:].max() ** 2 > 0.5  # most foreground pixels share that bin
        assert np.argmax(row[:n_bins]) >= cfg.hue_bins * 4  # whole frame: mostly grey texture


def test_shape_expert_tells_elongated_from_compact_and_is_missing_without_motion():
    # The bar moves across its long side: a background-difference cue sees all of it.
    videos = {"square": _video(shape=(7, 7)), "bar": _video(shape=(3, 12)),
              "still": _video(velocity=(0.0, 0.0))}
    out = extract_experts(videos, ExpertConfig(experts=("shape",)))
    feats, avail = out.features["shape"], out.available["shape"]
    assert avail.tolist() == [True, True, False]  # nothing moves: no region, no feature
    assert (feats[2] == 0).all()
    area, ecc, axis_ratio = feats[:2, 0], feats[:2, 1], feats[:2, 6]
    assert area[0] / area[1] == pytest.approx(14 * 14 / (6 * 24), rel=0.15)
    assert ecc[0] < 0.7 and ecc[1] > 0.9
    assert axis_ratio[0] > 0.7 and axis_ratio[1] < 0.45  # minor / major axis


def test_cnn_expert_is_seeded_random_features():
    videos = {"a": _video(seed=1), "b": _video(colour=(0.1, 0.2, 0.9), seed=2)}
    one = extract_experts(videos, ExpertConfig(experts=("cnn",), seed=5)).features["cnn"]
    two = extract_experts(videos, ExpertConfig(experts=("cnn",), seed=5)).features["cnn"]
    other = extract_experts(videos, ExpertConfig(experts=("cnn",), seed=6)).features["cnn"]
    assert one.shape == (2, 128)  # unet_tiny: 64 deepest channels, mean and max pooled
    np.testing.assert_array_equal(one, two)
    assert not np.allclose(one, other)
    assert not np.allclose(one[0], one[1])


def test_missing_rates_drop_exact_counts_and_keep_one_expert_per_video():
    videos = {f"v{i}": _video(velocity=(1.0 + 0.1 * i, 0.5), seed=i, t=16) for i in range(8)}
    cfg = ExpertConfig(experts=("colour", "motion"), missing_rates={"colour": 0.5, "motion": 0.75})
    out = extract_experts(videos, cfg)
    assert out.videos == list(videos)
    # colour first: 4 of 8 dropped; motion: round(0.75 * 8) = 6 wanted, but only the 4 videos
    # that still have colour can lose it.
    assert (~out.available["colour"]).sum() == 4
    assert (~out.available["motion"]).sum() == 4
    stack = np.stack([out.available["colour"], out.available["motion"]], 1)
    assert stack.sum(1).tolist() == [1] * 8
    for name in ("colour", "motion"):
        assert (out.features[name][~out.available[name]] == 0).all()
    again = extract_experts(videos, cfg)
    for name in ("colour", "motion"):
        np.testing.assert_array_equal(out.available[name], again.available[name])
    with pytest.raises(UserError, match="valid names"):
        extract_experts(videos, ExpertConfig(experts=("colour", "smell")))
    with pytest.raises(UserError, match="missing_rates.shape"):
        extract_experts(videos, ExpertConfig(experts=("colour",), missing_rates={"shape": 0.5}))
    assert list_experts() == ["cnn", "colour", "motion", "shape"]


def _nn_accuracy(x: np.ndarray, labels: list[str]) -> float:
    """Leave-one-out 1-nearest-neighbour accuracy of ``labels`` (Euclidean)."""
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    y = np.array(labels)
    return float((y[d.argmin(1)] == y).mean())


@pytest.fixture(scope="module")
def easy_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    assert cli_main(["world", "--preset", "easy", "--out", str(out), "--videos", "32",
                     "--frames", "32", "--size", "64", "--seed", "0"]) == 0
    frames, attrs = read_world(out)
    return frames, json.loads((out / "attributes.json").read_text())


def test_experts_on_the_world_each_separate_their_own_attribute(easy_world):
    frames, attrs = easy_world
    out = extract_experts(frames, ExpertConfig())
    assert {k: v.shape for k, v in out.features.items()} == {
        "colour": (32, 102), "motion": (32, 27), "shape": (32, 30), "cnn": (32, 128)}
    assert out.available["colour"].all() and out.available["shape"].sum() >= 16
    main = [max(attrs[v]["objects"], key=lambda o: o["area_fraction"]) for v in out.videos]
    colour = [o["colour"] for o in main]
    direction = [o["direction"] for o in main]
    majority = lambda y: max(y.count(v) for v in set(y)) / len(y)  # noqa: E731
    col, mot = out.features["colour"], out.features["motion"]
    # Colour: nearest neighbours in the colour expert share the object colour far more often
    # than the majority rate, and more often than in the motion expert.
    assert _nn_accuracy(col, colour) >= 2 * majority(colour)
    assert _nn_accuracy(col, colour) > _nn_accuracy(mot, colour) + 0.2
    # Direction: likewise for the motion expert, and its direction unit vector names the
    # compass direction of most objects (chance 1/8).
    assert _nn_accuracy(mot, direction) >= 1.3 * majority(direction)
    assert _nn_accuracy(mot, direction) > _nn_accuracy(col, direction) + 0.15
    decoded = [COMPASS[int(np.round(np.degrees(np.arctan2(m[1], m[0])) / 45)) % 8] for m in mot]
    assert np.mean([a == b for a, b in zip(decoded, direction)]) >= 0.45
