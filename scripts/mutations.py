"""The mutation catalogue of scripts/mutation_score.py: realistic single faults in reference/, one per entry.

Each entry replaces one snippet that must occur exactly once in its file. ``equivalent`` (a reason) marks a
mutation that cannot change any result; it is run and reported but not counted in the score.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    id: str
    file: str
    find: str
    replace: str
    description: str
    equivalent: str = ""


MUTATIONS = [
    Mutation("compare-rtol-ignored", "reference/compare.py", "allowed = tol.atol + tol.rtol * e.abs()",
             "allowed = tol.atol + tol.rtol * e.abs().max()", "tolerance scaled by the largest entry, not each entry"),
    Mutation("seeding-purpose-ignored", "reference/seeding.py", 'return zlib.adler32(f"{int(seed)}:{purpose}".encode())',
             'return zlib.adler32(f"{int(seed)}".encode())', "derive_seed ignores the purpose: streams coincide"),
]
