"""`ray job submit` entry for student population training: the `popdistill train` command.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/train.py --store s3://bucket/run1/teacher/selected --out s3://bucket/run1
"""

from __future__ import annotations

import sys

from popdistill.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
