"""One module per ``popdistill`` command, named as the command (``run.py`` is ``popdistill
run``); :mod:`popdistill.cli` lists them. Each exposes ``HELP``, ``DESCRIPTION``,
``add_arguments(parser)`` and ``main(args)``."""

from __future__ import annotations

import argparse

__all__ = ["add_set_option"]


def add_set_option(p: argparse.ArgumentParser, example: str) -> None:
    """``--set dotted.field=VALUE`` (repeatable) into ``args.overrides``; VALUE is YAML, applied
    after the config file and the flags (:func:`popdistill.config.apply_overrides`)."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="set any config field (dotted; VALUE read as YAML) after the file and "
                        f"the flags, e.g. {example} (repeatable)")
