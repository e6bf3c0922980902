"""Regression-check mode: the theory's properties, probed on a user's loss and network (docs/REGRESSION.md).

Modules, in the direction data flows:
``properties`` (the registry: one record per property, the only list of them); ``declarations`` (what a
loss takes and which pairs it weighs) -> ``loading`` (``pkg.mod:factory`` specs) -> ``engine`` (the one module
that calls the user's loss: ``evaluate``, the first call, a declared dtype, the rebuild at another temperature;
``distributed`` runs it in W processes) on ``geometry``'s points (a Gram matrix, the probe batch sizes)
-> ``probe`` (pair weights by autograd; ``reference_losses``: the references' arithmetic) -> ``loss_properties`` and
``network_properties`` (one ``CheckResult`` per property, via ``verdicts``; ``batches`` runs them at every
probe batch size, ``precision`` holds float32 to float64, ``declared`` checks the declaration against the
weights, ``hints`` adds the routing hint) -> ``plugin`` (pytest items; loaded by the entry point
``dualnet_ssl.pytest_plugin`` only when an --ssl-* option is given) and ``report`` (the JSON report). ``builtin``
and ``peers`` hold ready declarations.
"""
from dualnet_ssl.regression import conventions, signatures, twin
from dualnet_ssl.regression.builtin import reference_mlp, reference_nt_xent, reference_simple, reference_triplet
from dualnet_ssl.regression.declarations import (DECLARATION_FIELDS, Layout, LossAdapter, NetAdapter, per_anchor,
                                                 two_view)
from dualnet_ssl.regression.engine import first_call
from dualnet_ssl.regression.geometry import batch_sizes, make_probe
from dualnet_ssl.regression.loading import LossSubject, NetSubject, builtin_loss, load_loss, load_net
from dualnet_ssl.regression.precision import TAU_GRID, check_float32
from dualnet_ssl.regression.network_properties import COVARIANCE_PROPERTY, check_covariance_form
from dualnet_ssl.regression.peers import (LIGHTLY_HINT, PEERS_HINT, info_nce, lightly_ntxent, pml_ntxent,
                                          pml_triplet)
from dualnet_ssl.regression.properties import LOSS_PROPERTIES, NET_PROPERTIES, REGISTRY, check_loss, check_network
from dualnet_ssl.regression.reference_losses import anchor_distances, anchor_weight
from dualnet_ssl.regression.probe import (assemble_pair_weights, flow_from_point_gradients,
                                          pair_weights_from_gram_gradient, recover_weights)
from dualnet_ssl.regression.signatures import FORMS
from dualnet_ssl.regression.twin import bias_free_twin, class_distance

__all__ = [
    "TAU_GRID", "REGISTRY", "batch_sizes", "check_float32", "first_call",
    "COVARIANCE_PROPERTY", "DECLARATION_FIELDS", "FORMS", "bias_free_twin", "class_distance", "conventions",
    "flow_from_point_gradients", "signatures", "twin", "LIGHTLY_HINT", "LOSS_PROPERTIES", "Layout", "LossAdapter",
    "LossSubject", "NET_PROPERTIES", "NetAdapter", "NetSubject", "PEERS_HINT", "anchor_distances", "anchor_weight",
    "assemble_pair_weights", "builtin_loss", "check_covariance_form", "check_loss", "check_network", "info_nce",
    "lightly_ntxent", "load_loss", "load_net", "make_probe", "pair_weights_from_gram_gradient", "per_anchor",
    "pml_ntxent", "pml_triplet", "recover_weights", "reference_mlp", "reference_nt_xent", "reference_simple",
    "reference_triplet", "two_view",
]
