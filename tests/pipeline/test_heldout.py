"""Held-out evaluation on videos without ground truth (your own): no scores, but the mask grid
still shows each video's first frame with every method's mask."""

from __future__ import annotations

import numpy as np
from PIL import Image

from popdistill.pipeline.config import DataConfig
from popdistill.pipeline.heldout import evaluate_heldout
from popdistill.students.multinet import multinet_mask
from tests.train.toy import square_records, write_store


def test_videos_without_ground_truth_get_a_grid_and_no_scores(tmp_path):
    videos = tmp_path / "my_videos"
    stores = {}
    for name, seed in (("a", 1), ("b", 2), ("VideoPCA", 3)):
        records = []
        for clip in ("clipA", "clipB"):
            records += square_records(3, size=32, seed=seed, mask_size=16, video=clip, with_gt=False)
        stores[name] = str(write_store(tmp_path / name, records))
    for clip in ("clipA", "clipB"):
        (videos / clip).mkdir(parents=True)
        for i, r in enumerate(square_records(3, size=32, video=clip, with_gt=False)):
            Image.fromarray(r.image).save(videos / clip / f"{i}.png")
    data = DataConfig(path=str(videos), format="video_folder")
    results, grid = evaluate_heldout(
        data, {"a": stores["a"], "b": stores["b"]}, {"Multi-Net": ["a", "b"]}, grid_frames=5,
        log=lambda m: None, grid_stores={"VideoPCA": stores["VideoPCA"]})
    assert [row.title for row in grid] == ["clipA/0", "clipB/0"]
    assert all(row.gt_mask is None for row in grid)
    assert sorted(grid[0].masks) == ["Multi-Net", "VideoPCA", "a", "b"]
    expected = multinet_mask([grid[0].masks["a"], grid[0].masks["b"]], (32, 32), "geomean")
    np.testing.assert_allclose(grid[0].masks["Multi-Net"], expected)
    assert results["a"]["overall"]["J"] is None and "VideoPCA" not in results  # shown, not scored
