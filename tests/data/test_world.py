"""The procedural world: determinism, exact masks, DAVIS round trip, attributes, presets, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from popdistill.data import world_background as wb
from popdistill.data import world_render as wr
from popdistill.data.readers import create_reader
from popdistill.data.world import (
    PRESETS,
    WorldConfig,
    WorldVideo,
    load_world_config,
    make_config,
    render_video,
)
from popdistill.data.world_describe import direction_word, speed_word
from popdistill.data.world_io import corpus_stats, generate_world
from popdistill.errors import UserError

SMALL = {"videos": 3, "frames": 8, "size": 64}
QUIET = lambda msg: None  # noqa: E731


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def medium_corpus(tmp_path_factory) -> tuple[WorldConfig, Path, dict]:
    cfg = make_config("medium", **SMALL)
    out = tmp_path_factory.mktemp("world")
    manifest = generate_world(cfg, out, progress=QUIET)
    return cfg, out, manifest


# -- drawing primitives ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(wr.SHAPES))
def test_every_shape_fits_the_unit_disc_and_has_area(kind):
    rng = np.random.default_rng(3)
    params = wr.SHAPES[kind][0](rng)
    g = np.linspace(-1.5, 1.5, 301)
    u, v = np.meshgrid(g, g)
    for phase in (0.0, 1.3, 4.0):
        mask = wr.SHAPES[kind][1](params, u, v, phase)
        assert not mask[np.hypot(u, v) > 1.0 + 1e-6].any()
    assert 0.1 < wr.shape_area(kind, params) <= np.pi + 0.05


def test_draw_shape_paints_exactly_its_mask_with_the_expected_area():
    image = np.zeros((64, 64, 3), np.float32)
    mask, window = wr.draw_shape(image, (30.0, 33.0), 10.0, 0.0, "circle", {},
                                 lambda u, v: np.ones(u.shape + (3,), np.float32))
    painted = image[..., 0] > 0
    full = np.zeros((64, 64), bool)
    full[window] = mask
    assert np.array_equal(painted, full)
    assert abs(painted.sum() - np.pi * 100) < 0.03 * np.pi * 100  # disc of radius 10
    # A square's vertices lie on the unit circle (a diamond at angle 0); turned by 45 degrees
    # it is axis-aligned with half side 10 / sqrt(2) = 7.07 px: pixel centres 25..39 -> 15 x 15.
    image[:] = 0
    wr.draw_shape(image, (32.0, 32.0), 10.0, np.pi / 4, "square", wr.SHAPES["square"][0](None),
                  lambda u, v: np.ones(u.shape + (3,), np.float32))
    ys, xs = np.nonzero(image[..., 0])
    assert (ys.min(), ys.max(), xs.min(), xs.max(), len(ys)) == (25, 39, 25, 39, 225)
    assert wr.draw_shape(image, (-50.0, -50.0), 5.0, 0.0, "circle", {}, lambda u, v: 1) is None


def test_words_and_colour_names():
    assert direction_word(1, 0) == "right"
    assert direction_word(0, -1) == "up"  # image y grows downwards
    assert direction_word(1, 1) == "down-right"
    assert direction_word(-1, -1) == "up-left"
    assert [speed_word(v, 128) for v in (0.5, 1.5, 3.0)] == ["slow", "medium", "fast"]
    assert wr.colour_name((0.85, 0.15, 0.15)) == "red"
    assert wr.colour_name((0.1, 0.3, 0.8)) == "blue"
    assert wr.colour_name((0.5, 0.5, 0.5)) == "grey"


@pytest.mark.parametrize("name", sorted(wb.PHOTO_BACKGROUNDS))
def test_bundled_photos_load_offline(name):
    img = wb.load_photo(name)
    assert img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 300
    assert img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1 and img.std() > 0.02


def test_sklearn_photos_read_directly_match_load_sample_image():
    from sklearn.datasets import load_sample_image

    for name in ("china.jpg", "flower.jpg"):
        assert np.array_equal(wb._sklearn_sample_image(name), load_sample_image(name))


# -- rendering ------------------------------------------------------------------------------

def _flat_world(**kw) -> WorldConfig:
    """Uniform background, no noise or illumination: every pixel is background or painted."""
    base = dict(background_contrast=0.0, clutter=0, noise=0.0, illumination=0.0,
                camera_motions=("static",), distractors=0, p_low_contrast=0.0,
                object_textures=("plain",), frames=6, size=64, videos=4)
    return make_config("medium", **{**base, **kw})


def test_mask_is_exactly_where_objects_are_painted():
    cfg = _flat_world(objects=(2, 2))
    for i in range(cfg.videos):
        v = render_video(cfg, i)
        bg = v.frames[0][v.labels[0] == 0][0]
        differs = (v.frames != bg).any(-1)
        assert np.array_equal(differs, v.labels > 0)
        assert set(np.unique(v.labels)) <= {0, 1, 2}


def test_distractors_are_painted_but_never_labelled():
    cfg = _flat_world(distractors=4, objects=(1, 1))
    painted_unlabelled = 0
    for i in range(cfg.videos):
        v = render_video(cfg, i)
        bg = np.median(v.frames[v.labels == 0], axis=0)
        painted_unlabelled += int(((v.frames != bg).any(-1) & (v.labels == 0)).sum())
        assert set(np.unique(v.labels)) <= {0, 1}
        assert all(d["motion"] in ("sway", "spin", "pulse", "drift") for d in v.attributes["distractors"])
    assert painted_unlabelled > 100


def _colour_distance_to_background(look: str) -> tuple[float, float]:
    """Mean RGB distance to the background colour of distractor pixels and of object pixels."""
    cfg = _flat_world(distractors=4, objects=(1, 1), clutter_look=look, videos=8)
    far = {"distractor": [], "object": []}
    for i in range(cfg.videos):
        v = render_video(cfg, i)
        bg = np.median(v.frames[v.labels == 0], axis=0)
        dist = np.linalg.norm(v.frames.astype(float) - bg, axis=-1)
        far["distractor"].append(dist[(dist > 0) & (v.labels == 0)])
        far["object"].append(dist[v.labels > 0])
    return tuple(float(np.concatenate(far[k]).mean()) for k in ("distractor", "object"))


def test_scene_clutter_look_is_tinted_from_the_background():
    scene_d, scene_o = _colour_distance_to_background("scene")
    object_d, object_o = _colour_distance_to_background("object")
    # Scene-look distractors sit close to the background colour; object-look ones are as far
    # from it as the objects are (same colour draw).
    assert scene_d < 0.5 * scene_o
    assert object_d > 0.6 * object_o
    assert make_config("hard").clutter_look == "object" and make_config("medium").clutter_look == "scene"
    with pytest.raises(UserError, match="clutter_look"):
        make_config("medium", clutter_look="shiny")


def _background_change(motion: str) -> float:
    cfg = make_config("medium", camera_motions=(motion,), noise=0.0, illumination=0.0,
                      distractors=0, frames=8, size=64, videos=3)
    diffs = []
    for i in range(cfg.videos):
        v = render_video(cfg, i)
        keep = (v.labels[0] == 0) & (v.labels[-1] == 0)
        d = np.abs(v.frames[-1].astype(int) - v.frames[0].astype(int))[keep]
        diffs.append(d.mean())
    return float(np.mean(diffs))


def test_camera_motion_moves_the_background_and_a_static_camera_does_not():
    assert _background_change("static") == 0.0
    assert _background_change("pan") > 5.0
    assert _background_change("zoom") > 2.0


def test_same_seed_same_video_different_seed_differs():
    cfg = make_config("hard", **SMALL)
    a, b = render_video(cfg, 1), render_video(cfg, 1)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.labels, b.labels)
    assert a.attributes == b.attributes
    c = render_video(make_config("hard", **{**SMALL, "seed": 1}), 1)
    assert not np.array_equal(a.frames, c.frames)


def test_presets_differ_and_hard_is_harder_than_easy():
    easy, medium, hard = PRESETS["easy"], PRESETS["medium"], PRESETS["hard"]
    assert easy.noise < medium.noise < hard.noise
    assert easy.jpeg_quality > medium.jpeg_quality > hard.jpeg_quality
    assert easy.distractors < medium.distractors < hard.distractors
    assert easy.p_low_contrast < medium.p_low_contrast < hard.p_low_contrast
    stats = {name: corpus_stats([render_video(make_config(name, videos=6, frames=8, size=64), i)
                                 for i in range(6)]) for name in ("easy", "hard")}
    assert stats["easy"]["mean_object_area"] > 1.5 * stats["hard"]["mean_object_area"]
    assert stats["easy"]["median_contrast_delta_e"] > 1.5 * stats["hard"]["median_contrast_delta_e"]
    assert "static" not in stats["hard"]["camera_motions"]


def test_config_errors_name_the_field():
    with pytest.raises(UserError, match="size"):
        make_config("medium", size=8)
    with pytest.raises(UserError, match="valid presets: easy, medium, hard"):
        make_config("extreme")
    with pytest.raises(UserError, match="camera_motions"):
        make_config("medium", camera_motions=("pan+wobble",))
    with pytest.raises(UserError, match="unknown world config field 'colour'"):
        make_config("medium", colour=1)
    with pytest.raises(UserError, match="noise: expected a number"):
        load_world_config({"preset": "hard", "noise": "loud"})


def test_load_world_config_starts_from_the_named_preset():
    cfg = load_world_config({"preset": "hard", "videos": 3, "camera_motions": ["pan"]})
    assert cfg == make_config("hard", videos=3, camera_motions=("pan",))
    assert cfg.noise == PRESETS["hard"].noise != PRESETS["medium"].noise


# -- corpus on disk -------------------------------------------------------------------------

def test_corpus_stats_by_hand():
    lab = np.zeros((4, 10, 10), np.uint8)
    lab[1, 4:6, 4:9] = 1  # 10 px, inside
    lab[2, 0:4, 0:5] = 1  # 20 px, touches the border
    lab[3, 4:6, 4:9] = 1  # 10 px
    lab[3, 7:8, 2:7] = 2  # 5 px
    attrs = {"objects": [{"id": 1, "contrast_delta_e": 10.0}, {"id": 2, "contrast_delta_e": 30.0}],
             "nuisances": {"low_contrast_objects": 1}, "camera": {"motion": "pan"}}
    v = WorldVideo("v", np.zeros((4, 10, 10, 3), np.uint8), lab, attrs)
    s = corpus_stats([v])
    assert s["empty_frame_fraction"] == 0.25
    assert s["border_touch_fraction"] == 0.25
    assert s["mean_foreground_area"] == round((0.10 + 0.20 + 0.15) / 4, 4)
    assert s["mean_object_area"] == round((0.10 + 0.20 + 0.10 + 0.05) / 4, 4)
    assert s["median_contrast_delta_e"] == 20.0
    assert s["low_contrast_object_fraction"] == 0.5 and s["two_object_video_fraction"] == 1.0


def test_davis_reader_reads_the_world_back(medium_corpus):
    cfg, out, manifest = medium_corpus
    reader = create_reader("davis", out)
    refs = reader.videos()
    assert [r.video for r in refs] == ["world_0000", "world_0001", "world_0002"]
    for i, ref in enumerate(refs):
        records = list(reader.read_video(ref))
        assert len(records) == cfg.frames and [r.frame for r in records] == list(range(cfg.frames))
        expected = render_video(cfg, i)
        for rec, frame, labels in zip(records, expected.frames, expected.labels):
            assert rec.image.shape == (64, 64, 3)
            assert np.array_equal(rec.gt_mask, labels > 0)
            ids = [k for k in (1, 2) if (labels == k).any()]
            assert len(rec.gt_boxes) == len(ids)
            for box, k in zip(rec.gt_boxes, ids):
                ys, xs = np.nonzero(labels == k)
                assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            # JPEG at quality 85 stays close to the rendered frame.
            assert np.abs(rec.image.astype(int) - frame.astype(int)).mean() < 6
        assert ref.meta["attributes"] == json.loads(json.dumps(expected.attributes))
    assert reader.skipped == []
    assert (out / "contact_sheet.png").exists()


def test_attributes_are_complete_and_match_the_masks(medium_corpus):
    cfg, out, manifest = medium_corpus
    attrs = json.loads((out / "attributes.json").read_text())
    assert sorted(attrs) == manifest["videos"] == [f"world_{i:04d}" for i in range(3)]
    words = {"right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right", "in place"}
    for name, a in attrs.items():
        assert a["preset"] == "medium" and a["frames"] == 8 and a["size"] == 64
        assert a["background"]["kind"] in ("texture", "photo", "texture photo")
        assert a["background"]["name"] in wb.TEXTURE_BACKGROUNDS or a["background"]["name"] in wb.PHOTO_BACKGROUNDS
        assert a["camera"]["motion"] in cfg.camera_motions and a["camera"]["description"]
        assert {"list", "illumination", "noise_sigma", "jpeg_quality"} <= set(a["nuisances"])
        assert 1 <= len(a["objects"]) <= 2 and a["summary"]
        labels = np.stack([np.asarray(Image.open(p)) for p in
                           sorted((out / "Annotations" / "64p" / name).glob("*.png"))])
        for o in a["objects"]:
            assert o["shape"] in wr.SHAPES and o["colour"] in wr.COLOURS and len(o["rgb"]) == 3
            assert o["direction"] in words and o["speed"] in ("still", "slow", "medium", "fast")
            area = (labels == o["id"]).mean((1, 2))
            assert o["area_fraction"] == pytest.approx(area[area > 0].mean(), abs=1e-4)
            assert o["visible_fraction"] == pytest.approx((area > 0).mean(), abs=1e-4)
            assert 0.001 < o["area_fraction"] < 0.3  # non-trivial masks
    stats = manifest["stats"]
    assert 0.001 < stats["mean_foreground_area"] < 0.3
    assert 0 <= stats["border_touch_fraction"] <= 1 and 0 <= stats["empty_frame_fraction"] < 0.5


def test_same_seed_same_bytes_on_disk(medium_corpus, tmp_path):
    cfg, out, _ = medium_corpus
    generate_world(cfg, tmp_path / "again", progress=QUIET)
    assert _files(out) == _files(tmp_path / "again")
    generate_world(make_config("medium", **{**SMALL, "seed": 5}), tmp_path / "other", progress=QUIET)
    other = _files(tmp_path / "other")
    assert other.keys() == _files(out).keys() and other != _files(out)


def test_skip_existing(tmp_path):
    cfg = make_config("easy", videos=2, frames=3, size=48)
    first = generate_world(cfg, tmp_path, progress=QUIET)
    assert first["generated"]
    stamp = (tmp_path / "world.json").stat().st_mtime_ns
    msgs = []
    again = generate_world(cfg, tmp_path, skip_existing=True, progress=msgs.append)
    assert not again["generated"] and "identical parameters" in msgs[0]
    assert (tmp_path / "world.json").stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match=r"different parameters \(seed\)"):
        generate_world(make_config("easy", videos=2, frames=3, size=48, seed=9), tmp_path,
                       skip_existing=True, progress=QUIET)
    # Without skip_existing a different world replaces the old one (no stale resolution).
    generate_world(make_config("easy", videos=1, frames=3, size=40), tmp_path, progress=QUIET)
    assert [p.name for p in (tmp_path / "JPEGImages").iterdir()] == ["40p"]
    assert json.loads((tmp_path / "world.json").read_text())["config"]["size"] == 40


def test_refuses_to_overwrite_a_foreign_davis_layout(tmp_path):
    (tmp_path / "JPEGImages" / "480p" / "bear").mkdir(parents=True)
    with pytest.raises(UserError, match="did not write"):
        generate_world(make_config("easy", videos=1, frames=2, size=32), tmp_path, progress=QUIET)


def test_cli(tmp_path, capsys):
    from popdistill.cli import main

    out = tmp_path / "w"
    argv = ["world", "--preset", "easy", "--videos", "2", "--frames", "4", "--size", "48",
            "--out", str(out), "--noise", "0", "--camera-motion", "pan,zoom", "--distractors", "1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"{out}/contact_sheet.png" in printed and "mean_object_area=" in printed
    stored = json.loads((out / "world.json").read_text())
    assert stored["config"]["noise"] == 0.0 and stored["config"]["camera_motions"] == ["pan", "zoom"]
    assert stored["config"]["distractors"] == 1 and stored["config"]["preset"] == "easy"
    assert load_world_config(stored["config"]) == make_config(
        "easy", videos=2, frames=4, size=48, noise=0.0, camera_motions=("pan", "zoom"), distractors=1)
    assert main(argv + ["--skip-existing"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(argv[:-2] + ["--skip-existing", "--seed", "3"]) == 2
    assert "different parameters" in capsys.readouterr().err
    assert main(["world", "--out", str(tmp_path / "x"), "--camera-motion", "spin"]) == 2
    assert "camera_motions" in capsys.readouterr().err
