"""Per-theorem checkers (pytest files). One file per theorem; see docs/THEORY.md."""
