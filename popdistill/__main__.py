import sys

from popdistill.cli import main

sys.exit(main())
