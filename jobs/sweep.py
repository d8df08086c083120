"""`ray job submit` entry for the `popdistill sweep` command.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/sweep.py configs/teachtext_sweep.yaml
"""

from __future__ import annotations

import sys

from popdistill.cli import main

if __name__ == "__main__":
    sys.exit(main(["sweep", *sys.argv[1:]]))
