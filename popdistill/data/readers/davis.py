"""DAVIS layout: ``JPEGImages/<res>/<seq>/NNNNN.jpg`` + ``Annotations/<res>/<seq>/NNNNN.png``.

Annotations are palette (or grey) PNGs whose non-zero values are object ids; the foreground
mask is ``labels > 0`` and the ground-truth boxes are one box per object id. Frames without an
annotation file are read without ground truth. The embedded world (``popdistill world``) writes
this layout too, plus ``attributes.json`` with per-video attributes, which lands in each
video's ``meta``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from popdistill.data.readers._images import boxes_from_labels, list_images, load_rgb_file
from popdistill.data.readers._registry import Reader, SkipFn, VideoRef, register_reader
from popdistill.data.schema import FrameRecord
from popdistill.errors import UserError


@register_reader("davis")
class DavisReader(Reader):
    """Options: ``resolution`` (sub-folder of JPEGImages; default: the only one present)."""

    def _resolution(self) -> str:
        res = self.options.get("resolution")
        if res:
            return str(res)
        images = self.root / "JPEGImages"
        if not images.is_dir():
            raise FileNotFoundError(f"not a DAVIS layout (no JPEGImages/ folder): {self.root}")
        subdirs = sorted(p.name for p in images.iterdir() if p.is_dir())
        if "480p" in subdirs:
            return "480p"
        if len(subdirs) != 1:
            raise UserError(
                f"{images} has resolutions {subdirs}; pick one with the reader option 'resolution'"
            )
        return subdirs[0]

    def list_videos(self) -> list[VideoRef]:
        res = self._resolution()
        attrs_path = self.root / "attributes.json"
        attrs = json.loads(attrs_path.read_text()) if attrs_path.exists() else {}
        seq_root = self.root / "JPEGImages" / res
        if not seq_root.is_dir():
            raise FileNotFoundError(f"no such DAVIS resolution folder: {seq_root}")
        refs = []
        for seq in sorted(p for p in seq_root.iterdir() if p.is_dir()):
            meta = {"resolution": res}
            if seq.name in attrs:
                meta["attributes"] = attrs[seq.name]
            refs.append(VideoRef(video=seq.name, path=str(seq), meta=meta))
        return refs

    def iter_frames(self, ref: VideoRef, on_skip: SkipFn) -> Iterator[FrameRecord]:
        res = ref.meta.get("resolution") or self._resolution()
        frames = list_images(self.root / "JPEGImages" / res / ref.video)
        if not frames:
            self.skip(ref.path, "empty folder: no frame images", on_skip)
            return
        ann_dir = self.root / "Annotations" / res / ref.video
        for index, path in enumerate(frames):
            try:
                image, encoded, codec = load_rgb_file(path)
            except Exception as exc:  # noqa: BLE001
                self.skip(path, f"unreadable image: {exc}", on_skip)
                continue
            frame = int(path.stem) if path.stem.isdigit() else index
            gt_mask = gt_boxes = None
            labels = self.labels_for(ann_dir / f"{path.stem}.png", image, on_skip)
            if labels is not None:
                gt_mask = labels > 0
                gt_boxes = boxes_from_labels(labels)
            yield FrameRecord(
                dataset=self.options.get("dataset_name", "davis"),
                video=ref.video,
                frame=frame,
                image=image,
                source=str(path),
                gt_mask=gt_mask,
                gt_boxes=gt_boxes,
                encoded=encoded,
                image_codec=codec,
            )
