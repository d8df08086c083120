"""The ``popdistill`` command: thin; each sub-command lives beside the code it drives.

A sub-command module exposes ``HELP`` (one line), ``DESCRIPTION`` (optional, longer),
``add_arguments(parser)`` and ``main(args) -> int``. Command modules import heavy libraries
(torch, Ray, MLflow) inside ``main`` only, so ``popdistill --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from popdistill.errors import UserError

# name -> module implementing it. Add new sub-commands here.
COMMANDS: dict[str, str] = {
    "world": "popdistill.commands.world",
    "evaluate": "popdistill.commands.evaluate",
    "teacher": "popdistill.commands.teacher",
    "ui": "popdistill.commands.ui",
    "predict": "popdistill.commands.predict",
    "train": "popdistill.commands.train",
    "run": "popdistill.commands.run",
    "teachtext": "popdistill.commands.teachtext",
    "sweep": "popdistill.commands.sweep",
    "retrieval-corpus": "popdistill.commands.retrieval_corpus",
    "config": "popdistill.commands.config",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="popdistill",
        description=(
            "Teacher-student distillation in video: a VideoPCA teacher, a population of "
            "student segmenters trained with Ray, and TeachText retrieval distillation."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._main(args) or 0)
    except (FileNotFoundError, UserError) as exc:
        # User errors (bad path, bad config field): one readable line, no traceback.
        print(f"popdistill {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
