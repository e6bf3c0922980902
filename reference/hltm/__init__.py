"""The hierarchical latent tree model (HLTM) of docs/THEORY.md §8, split by concern:

- ``model``: the tree, its sampler, belief propagation, the brute-force joint, evaluation sets;
- ``metrics``: weighted statistics, unit correlations, the Bayes ceiling, recovery, selectivity;
- ``training``: ``TrainSpec`` and vmapped ensembles of SGD runs;
- ``checks``: exact checks (belief propagation, tree wiring, correlations, ceilings, the operator);
- ``sampler_checks``: the sampler against the exact model, by z-scores;
- ``recovery``: latent recovery and its mechanism over seeds, with the thresholds of ``dualnet_ssl.thresholds``;
- ``lower_layers``: the covariance operator of the layers below the top against the latents' selectivity;
- ``overparam``: the chance that some unit of a group starts selective, against 1 - (1 - p)^|N|.

Every public name is re-exported here: ``from dualnet_ssl import hltm; hltm.X``.
"""
from dualnet_ssl.errors import BadInput, IdentityViolation
from dualnet_ssl.hltm.checks import (check_belief_propagation, check_ceilings, check_exact_operator,
                                     check_feature_correlations, check_tree_wiring, joint_unit_correlations,
                                     root_selectivity)
from dualnet_ssl.hltm.lower_layers import (ConstantGatesAbove, LayerAlignment, check_alignment_above,
                                           check_lower_layer_operator, input_selectivity, layer_alignments,
                                           operator_factor, random_gate_patterns, selectivity_alignment)
from dualnet_ssl.hltm.metrics import (LatentRecovery, UnitForms, explained_share, latent_recovery, selectivity,
                                      unit_correlations, unit_forms, weighted_std)
from dualnet_ssl.hltm.model import (HLTM, MAX_ENUMERATED_LEAVES, MAX_ENUMERATED_NODES, EvalSet, all_bit_vectors,
                                    brute_force_eval_set, brute_force_leaf_tables, enumerate_leaves, eval_set,
                                    make_hltm, sampled_eval_set, subtree_leaves)
from dualnet_ssl.hltm.overparam import (GroupMoments, OverparamMeasurement, check_overparam_law, group_moments,
                                        measure_overparam, some_unit_law, unit_selectivities)
from dualnet_ssl.hltm.recovery import (HEADROOM_ARMS, HEADROOM_CASE, HEADROOM_MIN_GAINS, HEADROOM_SEEDS,
                                       headroom_specs,
                                       HID_MIN_FRACTION_GAP, HID_MIN_RAW_GAP, OFFICIAL_MIN_MEAN_ROOT_FRACTION,
                                       OFFICIAL_SEEDS, OFFICIAL_STEPS, POLARITY_MIN_FRACTION_GAP, POLARITY_MIN_RAW_GAP,
                                       RECOVERY_MAX_MEAN_LEVEL_DROP, RECOVERY_MAX_RUN_LEVEL_DROP,
                                       RECOVERY_MIN_MEAN_ROOT_FRACTION, RECOVERY_MIN_MEAN_ROOT_GAIN, SHARE_MIN_GROWTH,
                                       SUITE_SEEDS, check_levels_rise, check_paired_improvement, check_recovery,
                                       check_selectivity_amplified, recovery_table, root_explained_share, suite_runs,
                                       suite_specs)
from dualnet_ssl.hltm.sampler_checks import (check_enumeration_matches_sampling, check_latent_correlation,
                                             check_transitions, family_z_threshold)
from dualnet_ssl.hltm.training import (BiasedTreeNet, TrainResult, TrainSpec, build, describe_runs, initial_net,
                                       network, normalised, pair_loss, train, train_many)
from dualnet_ssl.seeding import derive_seed

__all__ = [name for name in dir() if not name.startswith("_")]
