"""Errors the suite raises. Each names the problem in plain words."""
from __future__ import annotations

from dualnet_ssl.results import CheckResult


class IdentityViolation(AssertionError):
    """A theorem's identity does not hold for the given quantities; ``result`` holds the structured verdict."""

    def __init__(self, message: str, result: CheckResult | None = None):
        super().__init__(message)
        self.result = result if result is not None else CheckResult(check="identity", status="fail", message=message)


class NotApplicable(ValueError):
    """The input lies outside the class the theorems cover (e.g. a network with biases)."""


class BadInput(ValueError):
    """The input is malformed: wrong shape, non-finite value, non-scalar loss."""
