"""Pure loss functions: tensors in, loss (and metrics) out. Trainers only call them.

``LOSSES`` names every public loss so recipes, docs and tests can find a method's math in one place.
"""

from posttrain.losses.cpl import cpl_loss, cpl_ranked_loss, segment_logps, sequence_nll

LOSSES = {
    "cpl": cpl_loss,
    "cpl_ranked": cpl_ranked_loss,
}

__all__ = ["LOSSES", "cpl_loss", "cpl_ranked_loss", "segment_logps", "sequence_nll"]
