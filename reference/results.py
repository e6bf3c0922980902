"""The one result type every checker produces (docs/THEORY.md, "Reading a verdict").

A theorem checker that fails raises ``IdentityViolation`` carrying a ``CheckResult``; a regression
property returns one. Failure messages, the pytest plugin and the JSON report all read its fields,
so nothing is ever rebuilt by parsing a message string.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

STATUSES = ("pass", "fail", "not_applicable")


def finite_or_none(value: float | None) -> float | None:
    """A number for strict JSON: non-finite figures (NaN, inf) become None (``null``)."""
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass(frozen=True)
class CheckResult:
    """One checker's verdict.

    ``check``: the property or quantity checked; ``status``: pass, fail or not_applicable;
    ``measured``: the figure held to the tolerance (a relative error, an imbalance, ...), None when no
    figure applies; ``tolerance`` / ``tolerance_reason``: what was allowed and why; ``where``: the
    worst place (layer, pair, index); ``seed``; ``message``: the explanation and hint, without the
    tolerance (``summary()`` states it once); ``subject`` / ``network``: what was checked;
    ``reproduce``: a command that reruns it; ``details``: further figures by name (a theorem checker's rank,
    eigenvalues, per-step alignment; a regression property's float32 finding, written as-is to the JSON report).
    """

    check: str
    status: str
    message: str
    measured: float | None = None
    tolerance: str | None = None
    tolerance_reason: str | None = None
    where: str = ""
    seed: int | None = None
    subject: str = ""
    network: str | None = None
    reproduce: str = ""
    details: Mapping[str, object] = field(default_factory=dict, hash=False)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")
        if self.details is None:
            object.__setattr__(self, "details", {})

    @property
    def ok(self) -> bool:
        return self.status == "pass"

    def summary(self) -> str:
        """One paragraph: what, on what, the verdict, the figure against its tolerance, the seed, the reproduce line."""
        on = self.subject + (f" on network {self.network}" if self.network else "")
        if self.status == "not_applicable":
            return f"{self.check} not applicable" + (f" to {on}" if on else "") + f": {self.message}"
        parts = [f"{self.check} {'passed' if self.ok else 'FAILED'}" + (f" for {on}" if on else "")
                 + f": {self.message}"]
        if self.measured is not None or self.tolerance is not None:
            figure = "n/a" if self.measured is None else f"{self.measured:.3e}"
            parts.append(f"measured {figure}, allowed {self.tolerance}"
                         + (f" ({self.tolerance_reason})" if self.tolerance_reason else ""))
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        if self.reproduce:
            parts.append(f"reproduce: {self.reproduce}")
        return "; ".join(parts)

    def record(self) -> dict:
        """The result as a strict-JSON-safe dict (non-finite numbers become null)."""
        return {"property": self.check, "subject": self.subject, "network": self.network, "status": self.status,
                "measured": finite_or_none(self.measured), "tolerance": self.tolerance,
                "tolerance_reason": self.tolerance_reason, "where": self.where, "seed": self.seed,
                "message": self.message, "reproduce": self.reproduce, "details": self.details}
