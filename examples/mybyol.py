"""An example user package: BYOL's loss written the way solo-learn writes it (docs/REGRESSION.md,
"Non-contrastive losses").

    pytest --ssl-loss examples.mybyol:make_loss --ssl-report report.json

``make_buggy_loss`` forgets to detach the target; the suite flags the stop-gradient.
"""
from __future__ import annotations

import torch.nn.functional as F

from dualnet_ssl.regression.noncontrastive import non_contrastive


def byol_loss_func(p, z):
    return 2 - 2 * F.cosine_similarity(p, z.detach(), dim=-1).mean()


def make_loss():
    return non_contrastive(byol_loss_func, reference="normalised_mse")


def make_buggy_loss():
    return non_contrastive(lambda p, z: 2 - 2 * F.cosine_similarity(p, z, dim=-1).mean(), reference="normalised_mse",
                           name="byol without detach")
