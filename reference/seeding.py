"""The one way the suite turns seeds into random streams (docs/THEORY.md, "Conventions").

A run or test has one integer seed. Every independent stream it needs (data, weights, a probe's
rotation, ...) gets its own seed from ``derive_seed(seed, purpose)``: adler32 of the text
``"<seed>:<purpose>"``, stable across runs, machines and Python versions (unlike ``hash()``).
Random tensors are always drawn from a local ``torch.Generator``, never from global state.
"""
from __future__ import annotations

import zlib

import torch


def derive_seed(seed: int, purpose: str) -> int:
    """An independent seed for one purpose (e.g. "data", "net", "rotation") from a run or test seed."""
    return zlib.adler32(f"{int(seed)}:{purpose}".encode())


def seed_from_text(text: str) -> int:
    """A seed from a name, e.g. a pytest node id (adler32, stable)."""
    return zlib.adler32(text.encode())


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``; draw on the CPU, then move, so results do not depend on the device."""
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g
