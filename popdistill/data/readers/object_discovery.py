"""Object Discovery in Internet Images (Rubinstein et al. 2013): image collections with masks.

Layout: ``Data/<Class>100/NNNN.jpg`` with ``Data/<Class>100/GroundTruth/NNNN.png`` (the
100-image subsets; the root may be the folder holding ``Data/`` or ``Data/`` itself). The
foreground is channel 0 > 0 of the ground-truth PNG. Each class folder is one "video" (an
image collection, so there is no motion); the frame index is the image's position in sorted
order. Boxes: by default one box per 8-connected foreground component (``boxes="components"``,
so that several objects in one image get one box each); ``boxes="union"`` gives one box around
all foreground instead. An image without a ground-truth file is read without ground truth; a
ground truth whose size differs from its image is reported and the image kept without it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from scipy import ndimage

from popdistill.data.readers._images import list_images, load_rgb_file
from popdistill.data.readers._registry import Reader, SkipFn, VideoRef, register_reader
from popdistill.data.schema import FrameRecord
from popdistill.errors import UserError

__all__ = ["ObjectDiscoveryReader", "mask_boxes"]

_EIGHT = np.ones((3, 3), dtype=bool)


def mask_boxes(mask: np.ndarray, mode: str = "components") -> np.ndarray:
    """[x0, y0, x1, y1] boxes (x1, y1 exclusive), N x 4 float32, of a boolean mask."""
    if mode == "union":
        labels, n = mask.astype(np.int32), int(mask.any())
    elif mode == "components":
        labels, n = ndimage.label(mask, structure=_EIGHT)
    else:
        raise UserError(f"object_discovery option 'boxes' must be 'components' or 'union', got {mode!r}")
    boxes = [
        [sl[1].start, sl[0].start, sl[1].stop, sl[0].stop]
        for sl in ndimage.find_objects(labels, max_label=n)
        if sl is not None
    ]
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


@register_reader("object_discovery")
class ObjectDiscoveryReader(Reader):
    """Options: ``folders`` (glob of class folders, default "*100"), ``classes`` (list of folder
    names), ``boxes`` ("components" or "union"), ``dataset_name``."""

    def __init__(self, root: str | Path, **options):
        super().__init__(root, **options)
        if options.get("boxes", "components") not in ("components", "union"):
            raise UserError(
                f"object_discovery option 'boxes' must be 'components' or 'union', got {options['boxes']!r}"
            )

    def _data_dir(self) -> Path:
        return self.root / "Data" if (self.root / "Data").is_dir() else self.root

    def list_videos(self) -> list[VideoRef]:
        pattern = self.options.get("folders", "*100")
        wanted = self.options.get("classes")
        refs = []
        for folder in sorted(p for p in self._data_dir().iterdir() if p.is_dir()):
            if not fnmatch.fnmatch(folder.name, pattern) or (wanted and folder.name not in wanted):
                continue
            refs.append(VideoRef(video=folder.name, path=str(folder)))
        return refs

    def iter_frames(self, ref: VideoRef, on_skip: SkipFn) -> Iterator[FrameRecord]:
        folder = Path(ref.path)
        images = list_images(folder)
        if not images:
            self.skip(folder, "empty folder: no images", on_skip)
            return
        stems = {p.stem for p in images}
        gt_dir = folder / "GroundTruth"
        if gt_dir.is_dir():
            for ann in sorted(gt_dir.glob("*.png")):
                if ann.stem not in stems:
                    self.skip(ann, "ground truth without its image", on_skip)
        mode = self.options.get("boxes", "components")
        for index, path in enumerate(images):
            try:
                image, encoded, codec = load_rgb_file(path)
            except Exception as exc:  # noqa: BLE001 - any decode failure is reported by path
                self.skip(path, f"unreadable image: {exc}", on_skip)
                continue
            gt_mask = gt_boxes = None
            labels = self.labels_for(gt_dir / f"{path.stem}.png", image, on_skip)
            if labels is not None:
                gt_mask = labels > 0
                gt_boxes = mask_boxes(gt_mask, mode)
            yield FrameRecord(
                dataset=self.options.get("dataset_name", "object_discovery"),
                video=ref.video,
                frame=index,
                image=image,
                source=str(path),
                gt_mask=gt_mask,
                gt_boxes=gt_boxes,
                encoded=encoded,
                image_codec=codec,
            )
