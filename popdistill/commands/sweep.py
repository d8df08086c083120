"""`popdistill sweep CONFIG`: Ray Tune (ASHA) search of the TeachText student's settings."""

from __future__ import annotations

import argparse

HELP = "Ray Tune ASHA search over Phi, distance, lambda and learning rate of the student"
DESCRIPTION = """\
Search the TeachText student's aggregation Phi, distance d, weight lambda and learning rate
with Ray Tune and the ASHA scheduler; every trial is one Ray Train run of the student against
frozen teachers (reused from a `popdistill teachtext` run with the same out, else trained
first) and one MLflow run under a parent run (experiment created once by this driver). The
best finished trial's config and test metrics are printed and written to
OUT/<name>/report.json.

CONFIG is YAML with the fields of SweepConfig: teachtext (a TeachTextConfig), space (phi,
distance: lists; lam, lr: [low, high] log-uniform), num_samples, grace_period,
reduction_factor, seed, name, tracking.

examples:
  popdistill sweep configs/teachtext_sweep.yaml
  popdistill ui --run-dir runs/teachtext_sweep     # browse the trials in MLflow
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML file with a SweepConfig")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else local)")


def main(args: argparse.Namespace) -> int:
    import json

    from popdistill.config import load_yaml
    from popdistill.ray_env import init_ray
    from popdistill.retrieval.sweep import SweepConfig, run_sweep

    cfg = load_yaml(SweepConfig, args.config)
    init_ray(args.address)
    report = run_sweep(cfg)
    for t in report["trials"]:
        state = "finished" if t["finished"] else f"stopped after {t['epochs']} epochs"
        print(f"{t['trial']}: {t['config']} val_score {t['val_score']} ({state})")
    best = report["best"]
    print("best config: " + json.dumps(best["config"]))
    print("best test: " + json.dumps({d: {k: round(v, 2) for k, v in m.items()}
                                      for d, m in best["test"].items()}))
    print(f"sweep took {report['seconds']:.0f} s; report: {cfg.teachtext.out}/{cfg.name}/report.json")
    return 0
