"""popdistill: teacher-student distillation in video, as a Ray-distributed population trainer.

Nothing heavy happens at import time: Ray, torch and MLflow are imported by the modules that
use them.
"""

__version__ = "0.1.0"
