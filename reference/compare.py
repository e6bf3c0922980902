"""Comparison with informative failure messages (finite check first, then rtol and atol together), and the one way
a core theorem checker fails: ``fail``, which raises ``IdentityViolation`` carrying a ``CheckResult``."""
from __future__ import annotations

import math
from typing import Mapping, NoReturn

import torch

from dualnet_ssl.errors import IdentityViolation
from dualnet_ssl.results import CheckResult
from dualnet_ssl.thresholds import Threshold
from dualnet_ssl.tolerances import Tolerance, tolerance


class Context(str):
    """A checker's context line (case, seed, architecture, reproduce command) that also carries, as fields, the
    ``seed``, the ``reproduce`` command and ``where`` (layer, pair) a failure record needs, never parsed back
    from the text. It is a ``str``, so any code that reads a context line reads it unchanged."""

    seed: int | None
    reproduce: str
    where: str

    def __new__(cls, text: str = "", *, seed: int | None = None, reproduce: str = "", where: str = ""):
        line = super().__new__(cls, text)
        line.seed, line.reproduce, line.where = seed, reproduce, where
        return line

    @classmethod
    def of(cls, context: str) -> "Context":
        """``context`` itself when it is a Context; a plain line otherwise (no seed, no reproduce command)."""
        return context if isinstance(context, Context) else cls(context)

    def within(self, *parts: str, where: str | None = None) -> "Context":
        """The line ``part, ..., self`` (empty parts dropped), keeping the seed and reproduce command; ``where``
        replaces the place when given."""
        return Context(", ".join(p for p in (*parts, self) if p), seed=self.seed, reproduce=self.reproduce,
                       where=self.where if where is None else where)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / max(||expected||, tiny), Frobenius norms."""
    diff = torch.linalg.vector_norm((actual - expected).flatten())
    scale = torch.linalg.vector_norm(expected.flatten()).clamp_min(torch.finfo(expected.dtype).tiny)
    return float(diff / scale)


def _allowed(limit: Tolerance | Threshold, allowed: str | None) -> tuple[str, str]:
    """(what was allowed, why): the table entry's value or ``allowed``, and its reason."""
    if isinstance(limit, Tolerance):
        return allowed or f"rtol={limit.rtol:g}, atol={limit.atol:g}", limit.reason
    return allowed or f"{limit.value:g}", f"{limit.reason}; measured: {limit.measured}"


def _record(status: str, check: str, message: str, limit, allowed, figure, context: str, where: str,
            details) -> CheckResult:
    line = Context.of(context)
    allowed, reason = _allowed(limit, allowed)
    return CheckResult(check=check, status=status, message=(f"[{line}] " if line else "") + message,
                       measured=figure, tolerance=allowed, tolerance_reason=reason, where=where or line.where,
                       seed=line.seed, reproduce=line.reproduce, details=dict(details or {}))


def passed(check: str, *, limit: Tolerance | Threshold, figure: float | None = None, allowed: str | None = None,
           context: str = "", where: str = "", details: Mapping[str, object] | None = None,
           message: str = "holds") -> CheckResult:
    """The ``CheckResult`` a core theorem checker returns when it passes: the same fields as ``fail`` records."""
    return _record("pass", check, message, limit, allowed, figure, context, where, details)


def identity_passed(check: str, rel: float, dtype: torch.dtype, kind: str, context: str = "",
                    **details) -> CheckResult:
    """The passing record of a checker whose figure is ``rel``, from ``assert_identity`` at the table's tolerance."""
    return passed(check, figure=rel, limit=tolerance(dtype, kind), context=context, details=details,
                  message=f"relative error {rel:.3e}")


def fail(check: str, message: str, *, limit: Tolerance | Threshold, allowed: str | None = None,
         figure: float | None = None, context: str = "", where: str = "", details: Mapping[str, object] | None = None,
         text: str | None = None) -> NoReturn:
    """Raise ``IdentityViolation`` for a failed ``check``: its ``result`` is a ``CheckResult`` holding the ``figure``,
    what was ``allowed`` (default: the ``limit``'s value) and why (the ``limit``'s reason, from the tolerance or
    threshold table), ``where`` (default: the context's place), the context's seed and reproduce command, and
    ``details``. The text is ``text`` (default ``check [context]: message``) and what was allowed, with its reason."""
    __tracebackhide__ = True
    result = _record("fail", check, message, limit, allowed, figure, context, where, details)
    headline = text or check + (f" [{context}]" if context else "") + f": {message}"
    raise IdentityViolation(f"{headline}; allowed {result.tolerance} ({result.tolerance_reason})", result)


def assert_identity(actual: torch.Tensor, expected: torch.Tensor, *, what: str, kind: str = "exact",
                    context: str = "", tol: Tolerance | None = None) -> float:
    """Assert actual == expected elementwise within the table's (rtol, atol); return the relative error.

    The message names the quantity, the context (theorem, layer, loss, seed, architecture),
    the largest absolute and relative differences and where they occur, and the tolerance; the raised
    ``IdentityViolation.result`` carries the same as fields (``fail``).
    """
    __tracebackhide__ = True
    tol = tol or tolerance(expected.dtype, kind)
    line = Context.of(context)

    def mismatch(message: str, figure: float | None = None, index: str = "") -> NoReturn:
        __tracebackhide__ = True
        fail(what, message, limit=tol, figure=figure, context=line,
             where=", ".join(p for p in (line.where, index) if p))

    if actual.shape != expected.shape:
        mismatch(f"shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    for name, t in (("actual", actual), ("expected", expected)):
        if not torch.isfinite(t).all():
            mismatch(f"{name} has {int((~torch.isfinite(t)).sum())} non-finite entries", math.inf)
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    abs_diff = (a - e).abs()
    allowed = tol.atol + tol.rtol * e.abs()
    rel = relative_error(a, e)
    if bool((abs_diff > allowed).any()):
        worst = int(torch.argmax(abs_diff - allowed))
        idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), a.shape)) if a.dim() else ()
        rel_diff = abs_diff / e.abs().clamp_min(torch.finfo(torch.float64).tiny)
        mismatch(f"mismatch in {int((abs_diff > allowed).sum())}/{a.numel()} entries; "
                 f"max abs diff {float(abs_diff.max()):.3e}, max rel diff {float(rel_diff.max()):.3e}, "
                 f"worst at index {idx}: actual {float(a.flatten()[worst]):.6e} vs expected "
                 f"{float(e.flatten()[worst]):.6e}; relative Frobenius error {rel:.3e}", rel, f"index {idx}")
    return rel
