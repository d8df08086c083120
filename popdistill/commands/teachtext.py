"""`popdistill teachtext CONFIG`: teachers, base model and TeachText student; prints the table."""

from __future__ import annotations

import argparse

HELP = "TeachText retrieval: teachers per text encoder, base model, distilled student, table"
DESCRIPTION = """\
Run the TeachText experiment on a retrieval corpus: one CE teacher per text encoder (trained
as a population on Ray Train, then frozen), the base model (the student's text encoder, no
teachers) and the TeachText student (ranking + lambda * d(S_student, Phi(S_teachers))), each
for every seed; optionally modality distillation (modality_experts: the student sees fewer
video experts than its teachers) and caption denoising (denoise_fraction: drop that fraction
of training captions whose best teacher margin is lowest). Prints R@1/5/10, MdR, MnR and the geometric
mean, text->video and video->text, mean +- std over seeds, and the inference time per query
of base and student; writes OUT/teachtext/report.json.

CONFIG is YAML with the fields of TeachTextConfig (out, corpus, world, corpus_options,
teachers, student, seeds, train, teacher_train, modality_experts, denoise_fraction, ray).
When `corpus` is unset, OUT/corpus is built from a generated world (`world:`) if missing.

examples:
  popdistill teachtext configs/teachtext_quickstart.yaml
  popdistill teachtext configs/teachtext_quickstart.yaml --out runs/tt2 --address auto
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML file with a TeachTextConfig")
    p.add_argument("--out", help="run directory (overrides the file's out)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else local)")


def main(args: argparse.Namespace) -> int:
    from popdistill.config import load_yaml
    from popdistill.ray_env import init_ray
    from popdistill.retrieval.teachtext import TeachTextConfig, run_teachtext

    cfg = load_yaml(TeachTextConfig, args.config)
    if args.out:
        cfg.out = args.out
    init_ray(args.address)
    report = run_teachtext(cfg)
    print(report["markdown"])
    times = report["inference_s_per_query"]
    print("inference per query (ms): " + ", ".join(f"{k} {v * 1e3:.3f}" for k, v in times.items()))
    for seed, stats in report["denoise"].items():
        print(f"denoising seed {seed}: {stats}")
    print(f"total {report['seconds']['total']:.0f} s; report: {cfg.out}/teachtext/report.json")
    return 0
