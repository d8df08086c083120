import json
import pickle

import numpy as np
import pytest

from popdistill.errors import UserError
from popdistill.retrieval import ce_layout
from popdistill.retrieval.ce_layout import (
    convert_ce_layout,
    discover_ce_layout,
    load_safe,
    read_ce_layout,
)

SENET = "aggregated_imagenet_25fps_256px_stride1_offset0/senet154-avg.pickle"
I3D = "aggregated_i3d_25fps_256px_stride25_offset0_inner_stride1/i3d-avg.pickle"
AUDIO = "aggregated_audio_feats/Audio_MSRVTT_new.pickle"


def _dump(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(obj, f)


def _text(rng, lengths, dim):
    return [rng.normal(size=(n, dim)).astype(np.float32) for n in lengths]


@pytest.fixture
def ce_root(tmp_path):
    """A tiny data set in the exact CE layout (MSR-VTT style file names)."""
    root = tmp_path / "MSRVTT" / "structured-symlinks"
    rng = np.random.default_rng(0)
    _dump(
        root / SENET,
        {
            "video0": np.arange(4, dtype=np.float64),
            "video1": float("nan"),  # how CE marks a missing feature
            "video2": np.ones(4, dtype=np.float32),
            # video3 absent
        },
    )
    _dump(
        root / I3D,
        {
            "video0": np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]]),  # frames x D: mean-pooled
            "video1": np.array([7.0, 8.0]),
            "video2": np.array([np.nan, 1.0]),
            "video3": np.array([[0.5, -0.5]]),
        },
    )
    _dump(root / AUDIO, {f"video{i}": np.full(3, float(i)) for i in range(4)})
    _dump(
        root / "raw-captions.pkl",
        {
            "video0": [["a", "man", "sings"], ["someone", "sings"]],
            "video1": [["a", "cat"]],
            "video2": [["cars", "race"], ["a", "race"], ["fast", "cars"]],
            "video3": [["nothing"]],
        },
    )
    _dump(
        root / "aggregated_text_feats" / "w2v.pkl",
        {
            "video0": _text(rng, [3, 2], 5),
            "video1": _text(rng, [2], 5),
            "video2": _text(rng, [2, 2, 0], 5),
            "video3": [],
        },
    )
    _dump(
        root / "aggregated_text_feats" / "openai-gpt.pickle",
        {f"video{i}": _text(rng, [4], 3) for i in range(4)},
    )
    (root / "train_list_full.txt").write_text("video0\nvideo1\n")
    (root / "val_list_full.txt").write_text("video2\n")
    (root / "test_list_full.txt").write_text("video3\n\n")
    return root


def test_discovery_matches_ce_file_names(ce_root):
    found = discover_ce_layout(ce_root)
    assert found.experts == {"i3d": I3D, "senet154": SENET}  # audio is not a *-avg file
    assert found.text == {
        "openai-gpt": "aggregated_text_feats/openai-gpt.pickle",
        "w2v": "aggregated_text_feats/w2v.pkl",
    }
    assert found.splits == {
        "test_full": "test_list_full.txt",
        "train_full": "train_list_full.txt",
        "val_full": "val_list_full.txt",
    }
    assert found.captions == "raw-captions.pkl"


def test_refuses_pickles_without_consent(tmp_path):
    root = tmp_path / "evil"
    marker = tmp_path / "code-ran"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    _dump(root / "raw-captions.pkl", Exploit())
    with pytest.raises(UserError, match="arbitrary code") as err:
        read_ce_layout(root)
    assert "allow_pickle=True" in str(err.value) and "convert_ce_layout" in str(err.value)
    with pytest.raises(UserError, match="arbitrary code"):
        convert_ce_layout(root, tmp_path / "safe")
    assert not marker.exists()
    assert not (tmp_path / "safe" / "manifest.json").exists()


def test_read_values_and_availability(ce_root):
    data = read_ce_layout(ce_root, allow_pickle=True)
    assert data.videos == ["video0", "video1", "video2", "video3"]
    assert data.expert_dims == {"i3d": 2, "senet154": 4}
    np.testing.assert_array_equal(
        data.experts["senet154"], [[0, 1, 2, 3], [0] * 4, [1] * 4, [0] * 4]
    )
    assert data.experts["senet154"].dtype == np.float32
    np.testing.assert_array_equal(data.available["senet154"], [True, False, True, False])
    np.testing.assert_array_equal(data.experts["i3d"], [[3, 6], [7, 8], [0, 0], [0.5, -0.5]])
    np.testing.assert_array_equal(data.available["i3d"], [True, True, False, True])
    np.testing.assert_array_equal(
        data.availability(["senet154", "i3d"]),
        [[True, True], [False, True], [True, False], [False, True]],
    )
    assert data.captions["video2"][1] == ["a", "race"]
    assert [a.shape for a in data.text["w2v"]["video2"]] == [(2, 5), (2, 5), (0, 5)]
    assert data.text["w2v"]["video3"] == []
    assert data.splits["test_full"] == ["video3"]
    np.testing.assert_array_equal(data.video_indices(data.splits["train_full"]), [0, 1])


def _assert_equal(a, b):
    assert a.videos == b.videos and a.captions == b.captions and a.splits == b.splits
    assert list(a.experts) == list(b.experts)
    for name in a.experts:
        np.testing.assert_array_equal(a.experts[name], b.experts[name])
        assert b.experts[name].dtype == np.float32
        np.testing.assert_array_equal(a.available[name], b.available[name])
    assert a.text.keys() == b.text.keys()
    for enc in a.text:
        assert a.text[enc].keys() == b.text[enc].keys()
        for vid, caps in a.text[enc].items():
            assert len(caps) == len(b.text[enc][vid])
            for x, y in zip(caps, b.text[enc][vid]):
                assert x.shape == y.shape
                np.testing.assert_array_equal(x, y)


def test_convert_then_load_safe_round_trip(ce_root, tmp_path, monkeypatch):
    original = read_ce_layout(ce_root, allow_pickle=True)
    dst = convert_ce_layout(ce_root, tmp_path / "safe", allow_pickle=True)
    manifest = json.loads((dst / "manifest.json").read_text())
    assert (
        manifest["experts"]["senet154"]["dim"] == 4 and manifest["text"]["openai-gpt"]["dim"] == 3
    )

    def no_pickle(*args, **kwargs):
        raise AssertionError("load_safe must not unpickle")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(ce_layout.pickle, "load", no_pickle)
    _assert_equal(original, load_safe(dst))


def test_explicit_mappings(ce_root, tmp_path):
    data = read_ce_layout(
        ce_root,
        allow_pickle=True,
        experts={"audio": AUDIO},
        text_features={},
        splits={"train": "train_list_full.txt"},
    )
    assert list(data.experts) == ["audio"] and data.text == {}
    np.testing.assert_array_equal(data.experts["audio"][:, 0], [0, 1, 2, 3])
    assert data.splits == {"train": ["video0", "video1"]}
    _assert_equal(
        data,
        load_safe(
            convert_ce_layout(
                ce_root,
                tmp_path / "s",
                allow_pickle=True,
                experts={"audio": AUDIO},
                text_features={},
                splits={"train": "train_list_full.txt"},
            )
        ),
    )


def test_errors_name_the_file(ce_root, tmp_path):
    _dump(ce_root / SENET, {"video0": np.zeros(4), "video2": np.zeros(3)})
    with pytest.raises(UserError, match="senet154-avg.pickle.*different lengths"):
        read_ce_layout(ce_root, allow_pickle=True)
    with pytest.raises(UserError, match="not found"):
        read_ce_layout(ce_root, allow_pickle=True, experts={"x": "nope-avg.pickle"})
    with pytest.raises(UserError, match="no manifest.json"):
        load_safe(tmp_path)
    with pytest.raises(FileNotFoundError):
        discover_ce_layout(tmp_path / "absent")
