"""Comparison with informative failure messages (finite check first, then rtol and atol together)."""
from __future__ import annotations

import math

import torch

from dualnet_ssl.errors import IdentityViolation
from dualnet_ssl.results import CheckResult
from dualnet_ssl.tolerances import Tolerance, tolerance


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / max(||expected||, tiny), Frobenius norms."""
    diff = torch.linalg.vector_norm((actual - expected).flatten())
    scale = torch.linalg.vector_norm(expected.flatten()).clamp_min(torch.finfo(expected.dtype).tiny)
    return float(diff / scale)


def _violation(what: str, context: str, message: str, tol: Tolerance, measured: float | None = None,
               where: str = "") -> IdentityViolation:
    """An IdentityViolation whose text states the tolerance once and whose ``result`` holds the fields."""
    full = f"{what}" + (f" [{context}]" if context else "") + f": {message}"
    result = CheckResult(check=what, status="fail", message=(f"[{context}] " if context else "") + message,
                         measured=measured, tolerance=f"rtol={tol.rtol:g}, atol={tol.atol:g}",
                         tolerance_reason=tol.reason, where=where)
    return IdentityViolation(f"{full}; allowed {tol}", result)


def assert_identity(actual: torch.Tensor, expected: torch.Tensor, *, what: str, kind: str = "exact",
                    context: str = "", tol: Tolerance | None = None) -> float:
    """Assert actual == expected elementwise within the table's (rtol, atol); return the relative error.

    The message names the quantity, the context (theorem, layer, loss, seed, architecture),
    the largest absolute and relative differences and where they occur, and the tolerance; the raised
    ``IdentityViolation.result`` carries the same as fields.
    """
    __tracebackhide__ = True
    tol = tol or tolerance(expected.dtype, kind)
    if actual.shape != expected.shape:
        raise _violation(what, context, f"shape {tuple(actual.shape)} != expected {tuple(expected.shape)}", tol)
    for name, t in (("actual", actual), ("expected", expected)):
        if not torch.isfinite(t).all():
            raise _violation(what, context, f"{name} has {int((~torch.isfinite(t)).sum())} non-finite entries",
                             tol, measured=math.inf)
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    abs_diff = (a - e).abs()
    allowed = tol.atol + tol.rtol * e.abs()
    rel = relative_error(a, e)
    if bool((abs_diff > allowed).any()):
        worst = int(torch.argmax(abs_diff - allowed))
        idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), a.shape)) if a.dim() else ()
        rel_diff = abs_diff / e.abs().clamp_min(torch.finfo(torch.float64).tiny)
        raise _violation(
            what, context,
            f"mismatch in {int((abs_diff > allowed).sum())}/{a.numel()} entries; "
            f"max abs diff {float(abs_diff.max()):.3e}, max rel diff {float(rel_diff.max()):.3e}, "
            f"worst at index {idx}: actual {float(a.flatten()[worst]):.6e} vs expected "
            f"{float(e.flatten()[worst]):.6e}; relative Frobenius error {rel:.3e}",
            tol, measured=rel, where=f"index {idx}")
    return rel
