"""``popdistill config``: the config reference, and a config file checked without running it."""

from __future__ import annotations

import argparse

from popdistill.commands import add_set_option

HELP = "print the config reference (every field, its default and meaning) or check a config"
DESCRIPTION = """\
--reference prints docs/config.md: every field of every section of a `popdistill run` config,
with its type, default, allowed values and meaning, generated from the config dataclasses.
CONFIG (with --set overrides) is loaded and checked as `popdistill run` would, without running
anything; the resolved config (every default filled in) is printed as YAML.

examples:
  popdistill config --reference > docs/config.md
  popdistill config configs/quickstart.yaml --set training.epochs=8
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="a run config to check and print resolved")
    p.add_argument("--reference", action="store_true", help="print the config reference (Markdown)")
    add_set_option(p, "training.epochs=8")


def main(args: argparse.Namespace) -> int:
    if args.reference:
        from popdistill.reference import reference_markdown

        print(reference_markdown(), end="")
        return 0
    if not args.config:
        from popdistill.errors import UserError

        raise UserError("give a CONFIG to check, or --reference")
    import yaml

    from popdistill.pipeline.config import load_run_config, resolved

    cfg = load_run_config(args.config, overrides=args.overrides)
    print(yaml.safe_dump(resolved(cfg), sort_keys=False, default_flow_style=None), end="")
    return 0
