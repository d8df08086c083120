"""`ray job submit` entry for the whole pipeline: the `popdistill run` command.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/run.py --config configs/cluster_aws.yaml
"""

from __future__ import annotations

import sys

from popdistill.cli import main


def _argv(args: list[str]) -> list[str]:
    """``--config FILE`` (the job form) or a bare ``FILE`` (the command form)."""
    if "--config" in args:
        i = args.index("--config")
        return ["run", args[i + 1], *args[:i], *args[i + 2 :]]
    return ["run", *args]


if __name__ == "__main__":
    sys.exit(main(_argv(sys.argv[1:])))
