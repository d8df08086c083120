"""`ray job submit --working-dir . -- python jobs/teacher.py --config configs/teacher.yaml`

Thin entry point: the same as `popdistill teacher`, joining the cluster from RAY_ADDRESS.
"""

import sys

from popdistill.cli import main

if __name__ == "__main__":
    sys.exit(main(["teacher", *sys.argv[1:]]))
