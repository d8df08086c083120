"""Building blocks of the generation loop (``popdistill.generations``): the run manifest,
held-out evaluation and the generation >= 2 selection by EvalSeg-Net."""

from popdistill.pipeline.heldout import evaluate_heldout
from popdistill.pipeline.manifest import Manifest
from popdistill.pipeline.rescore import rescore_predictions, select_scored

__all__ = ["Manifest", "evaluate_heldout", "rescore_predictions", "select_scored"]
