"""A network exactly invariant to its augmentation while K_l still varies (docs/THEORY.md §7, "An exactly
invariant network").

The augmentation moves input coordinate 0 only. Hidden unit 0 of the first layer is the only unit that reads
coordinate 0, and no unit of the second layer reads hidden unit 0 (its outgoing column is zero). So every view of
a sample has the same output, while K_1 = J_1^T kron x and K_2 = J_2^T kron f_1 still vary across views (through
x_0 and through f_1[0]). There r_+ = 0 and every pair weight depends on the samples alone, so Theorem 4's residue
is exactly 0 for every loss, and -dE[L]/dw_l = 2 OP_l w_l pins the pair mass: a wrong one (per negative, not
symmetrised, uniform) breaks the identity.
"""
from __future__ import annotations

import torch

from dualnet_ssl.compare import Context, assert_identity, identity_passed
from dualnet_ssl.connection import connection_dense
from dualnet_ssl.distributions import DiscreteAugmentedData
from dualnet_ssl.errors import BadInput
from dualnet_ssl.networks import BiasFreeMLP
from dualnet_ssl.operators import operator_times, residue
from dualnet_ssl.results import CheckResult
from dualnet_ssl.seeding import derive_seed, make_generator

AUGMENTED_COORDINATE = 0
DEAD_END_UNIT = 0


def invariant_case(widths, n_samples: int, n_augmentations: int, sigma: float, *, seed: int,
                   negative_slope: float = 0.0, device="cpu") -> tuple[BiasFreeMLP, DiscreteAugmentedData]:
    """(net, data): a bias-free MLP of depth >= 2 whose output ignores the
    augmentation, and N samples x M views that differ in coordinate 0 only (scale ``sigma``)."""
    if len(widths) < 3 or widths[0] < 2 or widths[1] < 2:
        raise BadInput(f"an invariant case needs depth >= 2, an input of width >= 2 and a first hidden layer of "
                       f"width >= 2 (one dead-end unit and one live), got widths {list(widths)}")
    net = BiasFreeMLP(widths, seed=derive_seed(seed, "net"), negative_slope=negative_slope, device=device)
    with torch.no_grad():
        first, second = net.weights[0], net.weights[1]
        first[:, AUGMENTED_COORDINATE] = 0.0                 # live units ignore the augmented coordinate
        first[DEAD_END_UNIT, AUGMENTED_COORDINATE] = 1.0     # the dead-end unit reads it (and is often active)
        second[:, DEAD_END_UNIT] = 0.0                       # nobody reads the dead-end unit
    g = make_generator(derive_seed(seed, "data"))
    base = torch.randn(n_samples, 1, widths[0], generator=g, dtype=torch.float64)
    base[..., AUGMENTED_COORDINATE] = 1.0
    shift = torch.zeros(n_samples, n_augmentations, widths[0], dtype=torch.float64)
    shift[..., AUGMENTED_COORDINATE] = float(sigma) * torch.randn(n_samples, n_augmentations, generator=g,
                                                                  dtype=torch.float64)
    views = (base + shift).to(device)
    aug = torch.full((n_samples, n_augmentations), 1.0 / n_augmentations, dtype=torch.float64, device=device)
    samples = torch.full((n_samples,), 1.0 / n_samples, dtype=torch.float64, device=device)
    return net, DiscreteAugmentedData(views, aug, samples)


def connection_spread(net: BiasFreeMLP, name: str, data: DiscreteAugmentedData) -> float:
    """max over samples of ||K_l(view) - K_l(first view)||: how much K_l varies under augmentation (> 0 makes the
    invariant case non-vacuous: an operator on K, not on a constant)."""
    n, m = data.aug_probs.shape
    k = connection_dense(net, data.flat_views(), name).reshape(n, m, -1)
    return float((k - k[:, :1]).detach().norm(dim=-1).max())


def output_spread(net: BiasFreeMLP, data: DiscreteAugmentedData) -> float:
    """max over samples of ||f_L(view) - f_L(first view)||: 0 for the invariant case."""
    n, m = data.aug_probs.shape
    with torch.no_grad():
        out = net(data.flat_views()).reshape(n, m, -1)
    return float((out - out[:, :1]).norm(dim=-1).max())


def check_main_term_pins_pair_mass(net: BiasFreeMLP, name: str, data: DiscreteAugmentedData, loss, *,
                                   n_negatives: int = 1, pair_mass: torch.Tensor | None = None,
                                   context: str = "") -> CheckResult:
    """Theorem 4 on an exactly invariant network: -dE[L]/dw_l (autograd through the enumerated loss) equals
    2 OP_l w_l with OP_l built from ``pair_mass`` (default: the loss's own mass, sum over the H negatives of
    E[beta_k], from the enumeration) by the structured product. Evidence: theta is 0 here by the theorem, not by
    construction, and only the right pair mass passes (docs/THEORY.md §7)."""
    __tracebackhide__ = True
    where = Context.of(context).within(f"Theorem 4 on an invariant network, loss {loss}", f"layer {name}",
                                       f"H={n_negatives}", where=f"layer {name}")
    spread = output_spread(net, data)
    if spread != 0.0:
        raise BadInput(f"the network is not invariant to the augmentation (output spread {spread:.3e}) [{where}]")
    split = residue(net, name, data, loss, n_negatives)
    mass = split.pair_mass if pair_mass is None else pair_mass
    main = 2 * operator_times(net, name, data, pair_mass=mass)
    rel = assert_identity(split.neg_gradient, main, kind="gradient",
                          what="-dE[L]/dw_l (autograd) vs 2 OP_l w_l (theta must be 0 on an invariant network)",
                          context=where)
    return identity_passed("Theorem 4 on an invariant network, theta = 0", rel, main.dtype, "gradient", where)
