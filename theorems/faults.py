"""Deliberately wrong quantities that the rejection tests feed to the checkers (not tests themselves)."""
from dualnet_ssl.sampled import iid_batch_counts


def shrunken_batches(probs, batch, n_batches, generator):
    """Each batch averages 5% fewer tuples than it claims: E[B ||g_B - g||^2] = 1.05 tr(Sigma), a 5% trace error."""
    small = round(batch / 1.05)
    return iid_batch_counts(probs, small, n_batches, generator) * (batch / small)
