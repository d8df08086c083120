"""`ray job submit` entry for the `popdistill teachtext` command.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/teachtext.py configs/teachtext_quickstart.yaml
"""

from __future__ import annotations

import sys

from popdistill.cli import main

if __name__ == "__main__":
    sys.exit(main(["teachtext", *sys.argv[1:]]))
