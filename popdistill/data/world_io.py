"""Write a world corpus in the DAVIS layout, with its attributes, manifest and contact sheet.

    OUT/JPEGImages/<size>p/world_0000/00000.jpg   frames (JPEG at the configured quality)
    OUT/Annotations/<size>p/world_0000/00000.png  palette PNG: 0 background, k = object k
    OUT/attributes.json                           video name -> attributes (captions, stats)
    OUT/contact_sheet.png                         sampled frames with the ground truth outlined
    OUT/world.json                                parameters, format version, corpus stats

``world.json`` is written last, so its presence means the corpus is complete. The same
config gives the same bytes in every file.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from popdistill.config import to_dict
from popdistill.data.world import FORMAT_VERSION, WorldConfig, WorldVideo, render_video
from popdistill.errors import UserError

__all__ = ["generate_world", "world_params", "corpus_stats", "contact_sheet"]

# DAVIS palette for object ids 0..4; outline colours for the contact sheet.
_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128]
_OUTLINE = np.array([[0, 0, 0], [255, 255, 0], [255, 0, 255], [0, 255, 255], [255, 128, 0]], np.uint8)
SHEET_VIDEOS, SHEET_FRAMES = 12, 6


def world_params(cfg: WorldConfig) -> dict:
    """What identifies a corpus: the format and the full config (as JSON values)."""
    return {"format": "popdistill-world", "format_version": FORMAT_VERSION,
            "config": json.loads(json.dumps(to_dict(cfg)))}


def _check_existing(out: Path, cfg: WorldConfig, skip_existing: bool) -> dict | None:
    """The stored manifest when OUT already holds this corpus and skipping is allowed."""
    manifest = out / "world.json"
    if manifest.exists():
        old = json.loads(manifest.read_text())
        new = world_params(cfg)
        same = all(old.get(k) == new[k] for k in ("format", "format_version", "config"))
        if skip_existing and same:
            return old
        if skip_existing:
            diff = sorted(k for k in new["config"] if old.get("config", {}).get(k) != new["config"][k])
            if old.get("format_version") != FORMAT_VERSION:
                diff.insert(0, "format_version")
            raise UserError(
                f"{manifest} exists with different parameters ({', '.join(diff)}); choose another "
                "--out, or run without --skip-existing to regenerate it")
        # Regenerate: remove the previous world's outputs (only files a world writes).
        manifest.unlink()
        for name in ("JPEGImages", "Annotations"):
            shutil.rmtree(out / name, ignore_errors=True)
    elif (out / "JPEGImages").exists() or (out / "Annotations").exists():
        raise UserError(f"{out} holds a DAVIS layout that popdistill world did not write "
                        "(no world.json); choose an empty --out folder")
    return None


def _write_video(root: Path, res: str, video: WorldVideo, quality: int) -> None:
    img_dir = root / "JPEGImages" / res / video.name
    ann_dir = root / "Annotations" / res / video.name
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    for i, (frame, labels) in enumerate(zip(video.frames, video.labels)):
        Image.fromarray(frame).save(img_dir / f"{i:05d}.jpg", "JPEG", quality=quality)
        ann = Image.fromarray(labels, mode="L")
        ann.putpalette(_PALETTE)
        ann.save(ann_dir / f"{i:05d}.png", optimize=False)


class _Stats:
    """Running corpus statistics over videos (objects, frames, foreground)."""

    def __init__(self) -> None:
        self.frames = self.empty = self.border = 0
        self.fg_area = 0.0
        self.obj_area = []
        self.contrast = []
        self.n_objects = self.n_low = self.two_object_videos = 0
        self.camera: dict[str, int] = {}

    def add(self, video: WorldVideo) -> None:
        a, lab = video.attributes, video.labels
        fg = lab > 0
        t = lab.shape[0]
        self.frames += t
        self.empty += int((~fg.any((1, 2))).sum())
        self.border += int((fg[:, 0].any(1) | fg[:, -1].any(1) | fg[:, :, 0].any(1) | fg[:, :, -1].any(1)).sum())
        self.fg_area += float(fg.mean((1, 2)).sum())
        for o in a["objects"]:
            area = (lab == o["id"]).mean((1, 2))
            self.obj_area.extend(area[area > 0].tolist())
            if o["contrast_delta_e"] is not None:
                self.contrast.append(o["contrast_delta_e"])
        self.n_objects += len(a["objects"])
        self.n_low += a["nuisances"]["low_contrast_objects"]
        self.two_object_videos += len(a["objects"]) >= 2
        m = a["camera"]["motion"]
        self.camera[m] = self.camera.get(m, 0) + 1

    def result(self, videos: int) -> dict:
        r = lambda x: round(float(x), 4)  # noqa: E731
        return {
            "videos": videos, "total_frames": self.frames, "total_objects": self.n_objects,
            "mean_object_area": r(np.mean(self.obj_area)) if self.obj_area else 0.0,
            "mean_foreground_area": r(self.fg_area / max(self.frames, 1)),
            "border_touch_fraction": r(self.border / max(self.frames, 1)),
            "empty_frame_fraction": r(self.empty / max(self.frames, 1)),
            "two_object_video_fraction": r(self.two_object_videos / videos),
            "low_contrast_object_fraction": r(self.n_low / max(self.n_objects, 1)),
            "median_contrast_delta_e": r(np.median(self.contrast)) if self.contrast else None,
            "camera_motions": dict(sorted(self.camera.items())),
        }


def corpus_stats(videos: list[WorldVideo]) -> dict:
    """Corpus statistics of rendered videos (the same numbers ``generate_world`` stores)."""
    acc = _Stats()
    for v in videos:
        acc.add(v)
    return acc.result(len(videos))


def contact_sheet(rows: list[tuple[str, list[np.ndarray], list[np.ndarray]]]) -> Image.Image:
    """A grid: one row per video of (name, frames, label maps), objects outlined by id."""
    from skimage.segmentation import find_boundaries

    gap = 2
    h, w = rows[0][1][0].shape[:2]
    cols = max(len(r[1]) for r in rows)
    sheet = np.full((len(rows) * (h + gap) + gap, cols * (w + gap) + gap, 3), 40, np.uint8)
    for i, (_, frames, labels) in enumerate(rows):
        for j, (frame, lab) in enumerate(zip(frames, labels)):
            tile = frame.copy()
            for k in np.unique(lab[lab > 0]):  # coloured inner outline, dark outer one
                tile[find_boundaries(lab == k, mode="outer") & (lab != k)] = 0
                tile[find_boundaries(lab == k, mode="inner")] = _OUTLINE[k % len(_OUTLINE)]
            y, x = gap + i * (h + gap), gap + j * (w + gap)
            sheet[y:y + h, x:x + w] = tile
    image = Image.fromarray(sheet)
    draw = ImageDraw.Draw(image)
    for i, (name, _, _) in enumerate(rows):
        y = gap + i * (h + gap)
        draw.rectangle([gap, y, gap + 6 * len(name) + 3, y + 11], fill=(0, 0, 0))
        draw.text((gap + 2, y), name, fill=(255, 255, 255))
    return image


def generate_world(cfg: WorldConfig, out: str | Path, skip_existing: bool = False,
                   progress: Callable[[str], None] = print) -> dict:
    """Render and write the corpus; return its manifest (parameters and statistics) plus
    ``generated`` (False when an identical corpus was already there).

    With ``skip_existing``, an existing corpus with identical parameters is kept as it is and
    one with different parameters is an error. Without it, a previous world in OUT is replaced.
    """
    out = Path(out)
    old = _check_existing(out, cfg, skip_existing)
    if old is not None:
        progress(f"{out / 'world.json'} exists with identical parameters; nothing to do")
        return {**old, "generated": False}
    out.mkdir(parents=True, exist_ok=True)
    res = f"{cfg.size}p"
    stats, attributes, sheet_rows = _Stats(), {}, []
    cols = np.unique(np.linspace(0, cfg.frames - 1, min(SHEET_FRAMES, cfg.frames)).round().astype(int))
    every = max(1, cfg.videos // 10)
    start = time.perf_counter()
    for index in range(cfg.videos):
        video = render_video(cfg, index)
        _write_video(out, res, video, cfg.jpeg_quality)
        stats.add(video)
        attributes[video.name] = video.attributes
        if index < SHEET_VIDEOS:  # the sheet shows the frames as written (after JPEG)
            img_dir = out / "JPEGImages" / res / video.name
            frames = [np.asarray(Image.open(img_dir / f"{i:05d}.jpg").convert("RGB")) for i in cols]
            sheet_rows.append((video.name, frames, [video.labels[i] for i in cols]))
        if (index + 1) % every == 0 or index + 1 == cfg.videos:
            progress(f"world: {index + 1}/{cfg.videos} videos "
                     f"({time.perf_counter() - start:.1f} s)")
    contact_sheet(sheet_rows).save(out / "contact_sheet.png")
    (out / "attributes.json").write_text(json.dumps(attributes, indent=1, sort_keys=True) + "\n")
    manifest = {**world_params(cfg), "videos": sorted(attributes), "stats": stats.result(cfg.videos)}
    (out / "world.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return {**manifest, "generated": True}
