"""Turning one regression check into a ``CheckResult``: pass, fail or not applicable, never a crash."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from dualnet_ssl.compare import assert_identity
from dualnet_ssl.errors import IdentityViolation, NotApplicable
from dualnet_ssl.results import CheckResult
from dualnet_ssl.runtime import one_intra_op_thread
from dualnet_ssl.tolerances import Tolerance, tolerance


@dataclass(frozen=True)
class Verdict:
    ok: bool
    measured: float | None
    tolerance: Tolerance | str | None
    message: str
    where: str = ""
    details: dict | None = None   # structured extras for the report (the float32 finding)


class NonFinite(ValueError):
    """The loss returned NaN or inf (value or gradient) on finite probe points: a failure, never a pass."""


def require_finite(what: str, *tensors: torch.Tensor) -> None:
    """Raise ``NonFinite`` naming ``what`` when any tensor holds NaN or inf (NaN compares false, so it must be
    caught before any ``<=`` test could let it pass)."""
    bad = sum(int((~torch.isfinite(t)).sum()) for t in tensors if t is not None)
    if bad:
        raise NonFinite(f"{what} has {bad} non-finite entries (NaN or inf) at finite probe points")


def _tolerance_fields(tol: Tolerance | str | None) -> tuple[str | None, str | None]:
    if isinstance(tol, Tolerance):
        return f"rtol={tol.rtol:g}, atol={tol.atol:g}", tol.reason
    return tol, None


def run_check(prop: str, subject: str, seed: int, body: Callable[[], Verdict], network: str | None = None
              ) -> CheckResult:
    """Run one check: a verdict, NotApplicable -> not_applicable, any other error -> a failure that says so."""
    common = dict(check=prop, subject=subject, seed=seed, network=network)
    try:
        with one_intra_op_thread():
            v = body()
    except NotApplicable as err:
        return CheckResult(status="not_applicable", message=str(err), **common)
    except NonFinite as err:
        return CheckResult(status="fail", message=f"{err}; NaN or inf never passes a property", **common)
    except Exception as err:   # the user's code raised, or returned something unusable: report, never crash
        return CheckResult(status="fail", message=f"the check could not run: {type(err).__name__}: {err}", **common)
    tol, reason = _tolerance_fields(v.tolerance)
    ok = v.ok and (v.measured is None or math.isfinite(v.measured))   # a non-finite figure never passes
    return CheckResult(status="pass" if ok else "fail", message=v.message, measured=v.measured, tolerance=tol,
                       tolerance_reason=reason, where=v.where, details=v.details, **common)


def working_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The precision a check is held to: float64 only when every tensor involved is float64, so a loss that
    returns float32 (it computes in float32 internally) is held to float32 tolerances, never falsely failed."""
    return torch.float64 if all(t.dtype == torch.float64 for t in tensors) else torch.float32


def compare(actual: torch.Tensor, expected: torch.Tensor, *, what: str, kind: str,
             also: tuple[torch.Tensor, ...] = ()) -> Verdict:
    """actual == expected within the table's tolerance for the working precision of actual, expected and ``also``."""
    tol = tolerance(working_dtype(actual, expected, *also), kind)
    try:
        rel = assert_identity(actual, expected, what=what, kind=kind, tol=tol)
        return Verdict(True, rel, tol, f"{what}: relative error {rel:.3e}")
    except IdentityViolation as err:
        measured = math.inf if err.result.measured is None else err.result.measured
        return Verdict(False, measured, tol, f"{what}: {err.result.message}")
