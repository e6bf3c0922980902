"""Errors the suite raises. Each names the problem in plain words."""


class IdentityViolation(AssertionError):
    """A theorem's identity does not hold for the given quantities."""


class NotApplicable(ValueError):
    """The input lies outside the class the theorems cover (e.g. a network with biases)."""


class BadInput(ValueError):
    """The input is malformed: wrong shape, non-finite value, non-scalar loss."""
