"""``popdistill world``: generate the embedded procedural video corpus (DAVIS layout)."""

from __future__ import annotations

import argparse

HELP = "generate the procedural video world (seeded videos with exact masks) in the DAVIS layout"
DESCRIPTION = """\
Generate short videos of textured objects moving over textured or photographic backgrounds
seen by a moving camera, with exact per-frame foreground masks, distractors, illumination
change, sensor noise and JPEG compression. Same seed, same bytes.

Writes OUT/JPEGImages/<size>p/world_NNNN/*.jpg, OUT/Annotations/<size>p/world_NNNN/*.png
(object ids 1, 2, ...), OUT/attributes.json (per-video attributes for captions),
OUT/world.json (parameters and corpus statistics) and OUT/contact_sheet.png.
Read it back with the DAVIS reader (format "davis").

Presets: easy (static or slow camera, plain backgrounds, one large contrasting object),
medium (default), hard (small low-contrast objects, clutter, strong camera motion, noise).
Knob options override the preset.

Example:
  popdistill world --preset hard --videos 20 --frames 48 --size 128 --out runs/world-hard
"""

PRESET_NAMES = ("easy", "medium", "hard")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=PRESET_NAMES, default="medium", help="default: medium")
    parser.add_argument("--videos", type=int, default=20, help="number of videos (default: 20)")
    parser.add_argument("--frames", type=int, default=48, help="frames per video (default: 48)")
    parser.add_argument("--size", type=int, default=128, help="frame side in pixels (default: 128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--out", default="data/world", help="output folder (default: data/world)")
    parser.add_argument("--skip-existing", action="store_true",
                        help="do nothing if OUT/world.json has identical parameters; "
                             "fail if it has different ones")
    knobs = parser.add_argument_group("knobs (override the preset)")
    knobs.add_argument("--noise", type=float, help="sensor noise std in 0-255 units")
    knobs.add_argument("--distractors", type=int, help="most distractor shapes per video")
    knobs.add_argument("--camera-motion", help="comma-separated camera motions to draw from: "
                       "static, pan, zoom, shake or '+' combinations (e.g. pan,pan+shake)")
    knobs.add_argument("--camera-strength", type=float, help="scale of pan/zoom/shake (1 = preset)")
    knobs.add_argument("--clutter", type=int, help="most static clutter shapes in the background")
    knobs.add_argument("--clutter-look", choices=("scene", "object"),
                       help="clutter and distractors tinted from the background (scene: a single "
                            "frame can tell them from objects) or drawn like objects (object: "
                            "only motion can)")
    knobs.add_argument("--illumination", type=float, help="largest relative brightness change, 0-1")
    knobs.add_argument("--jpeg-quality", type=int, help="JPEG quality 1-100")


def config_from_args(args: argparse.Namespace):
    """The WorldConfig named by the preset and overridden by the given options."""
    from popdistill.data.world import make_config

    overrides = {k: getattr(args, k) for k in ("videos", "frames", "size", "seed")}
    for name in ("noise", "distractors", "camera_strength", "clutter", "clutter_look", "illumination",
                 "jpeg_quality"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.camera_motion is not None:
        overrides["camera_motions"] = tuple(m.strip() for m in args.camera_motion.split(",") if m.strip())
    return make_config(args.preset, **overrides)


def main(args: argparse.Namespace) -> int:
    import time

    from popdistill.data.world_io import generate_world

    cfg = config_from_args(args)
    start = time.perf_counter()
    manifest = generate_world(cfg, args.out, skip_existing=args.skip_existing)
    if not manifest["generated"]:
        return 0
    stats = manifest["stats"]
    print(f"world: {stats['videos']} videos x {cfg.frames} frames at {cfg.size} px "
          f"(preset {cfg.preset}) in {time.perf_counter() - start:.1f} s -> {args.out}")
    print("stats: " + ", ".join(f"{k}={v}" for k, v in stats.items()))
    print(f"contact sheet: {args.out}/contact_sheet.png")
    return 0
