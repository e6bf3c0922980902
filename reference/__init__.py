"""Analytic reference implementations for Tian et al. (arXiv 2010.00578), in the conventions of docs/THEORY.md.

Importable without pytest: networks, the connection K_l, losses, exact discrete
data/augmentation distributions, covariance operators and per-theorem checks.
"""
