"""Mutation score of the suite: apply each realistic single mutation of reference/ and see whether the tests go red.

Each mutation in ``scripts/mutations.py`` replaces one exact snippet in one module of ``reference/`` (a Kronecker
order, a missing factor, a wrong mean, a mis-wired tree, a loosened tolerance, ...). For each, in a scratch copy of
the repository (HEAD, or ``--worktree``; the working tree itself is never touched), the script runs

1. ``pytest theorems/ -x`` (the checkers alone), then, if the mutant survived,
2. ``pytest -x`` (the whole default suite),

and prints the two scores with every survivor. A mutant "survives" a run that exits 0. A mutation whose snippet is
not found exactly once is reported as stale, so the catalogue cannot silently rot. Mutants listed as equivalent in
the catalogue (with the reason) are run and reported but not counted.

Usage (opt-in, not in the default CI; about 20-40 min on 2 cores):

    python scripts/mutation_score.py                 # every mutation
    python scripts/mutation_score.py -k kron -v      # those whose id contains "kron", with pytest's output tails
    python scripts/mutation_score.py --list          # the catalogue
    python scripts/mutation_score.py -k regression --first theorems/test_regression_verdicts.py,theorems/test_regression.py
                                                     # a red run of those files is a red theorems/; the survivors then
                                                     # run theorems/ whole, then the whole suite
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from mutations import MUTATIONS, Mutation  # noqa: E402

PER_RUN_TIMEOUT_S = 900


def _copy_tree(dest: Path, worktree: bool) -> None:
    """The committed tree (HEAD), or with ``worktree`` the files as they are now (tracked and untracked-but-not-
    ignored), plus an import alias dualnet_ssl -> reference so the copy, not the installed suite, is tested."""
    if worktree:
        files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                               check=True, capture_output=True).stdout.decode().split("\0")
        for name in filter(None, files):
            if (ROOT / name).is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, dest / name)
    else:
        archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    (dest / "dualnet_ssl").symlink_to("reference", target_is_directory=True)


def _pytest(tree: Path, args: list[str]) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "CI": "true", "HYPOTHESIS_PROFILE": "ci",
           "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args]
    try:
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=PER_RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return -1, "timed out (counted as killed)"
    return done.returncode, (done.stdout + done.stderr)[-1500:]


def run(mutations: list[Mutation], verbose: bool, worktree: bool = False, first: list[str] = ()) -> int:
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch)
        _copy_tree(tree, worktree)
        status, tail = _pytest(tree, ["theorems/"])
        if status != 0:
            print(f"the unmutated suite is not green (exit {status}); fix that first:\n{tail}")
            return 2
        for m in mutations:
            path = tree / m.file
            original = path.read_text()
            if original.count(m.find) != 1:
                results.append((m, "stale", f"snippet found {original.count(m.find)} times in {m.file}"))
                print(f"STALE   {m.id}: snippet found {original.count(m.find)} times in {m.file}")
                continue
            path.write_text(original.replace(m.find, m.replace))
            start = time.perf_counter()
            try:
                status = 0
                if first:     # files inside theorems/: red there is red in theorems/ (same tests, same order)
                    status, tail = _pytest(tree, list(first))
                if status == 0:
                    status, tail = _pytest(tree, ["theorems/"])
                outcome = "killed by theorems/"
                if status == 0:
                    status, tail = _pytest(tree, [])
                    outcome = "killed by tests/" if status != 0 else "SURVIVED"
            finally:
                path.write_text(original)
            results.append((m, outcome, tail))
            print(f"{outcome:20s} {m.id} ({time.perf_counter() - start:.0f} s){' [equivalent]' if m.equivalent else ''}")
            if verbose:
                print("    " + tail.strip().splitlines()[-1] if tail.strip() else "")
    counted = [(m, o) for m, o, _ in results if o != "stale" and not m.equivalent]
    by_theorems = sum(o == "killed by theorems/" for _, o in counted)
    by_all = sum(o != "SURVIVED" for _, o in counted)
    n = len(counted)
    print(f"\n{n} mutations counted ({sum(bool(m.equivalent) for m, _, _ in results)} equivalent, "
          f"{sum(o == 'stale' for _, o, _ in results)} stale)")
    print(f"pytest theorems/ alone: {by_theorems}/{n} killed ({100 * by_theorems / max(n, 1):.1f}%)")
    print(f"pytest (whole suite):   {by_all}/{n} killed ({100 * by_all / max(n, 1):.1f}%)")
    for m, o, _ in results:
        if o == "SURVIVED" or m.equivalent:
            print(f"  {'equivalent' if m.equivalent else 'SURVIVOR'}: {m.id} ({m.file}): {m.description}"
                  + (f" -- {m.equivalent}" if m.equivalent else ""))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="only mutations whose id contains this text (several: comma-separated)")
    parser.add_argument("--list", action="store_true", help="print the catalogue and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the last line of each pytest run")
    parser.add_argument("--worktree", action="store_true", help="mutate the working tree's files, not HEAD's")
    parser.add_argument("--first", default="", help="comma-separated test files under theorems/ to run first (a "
                        "cheaper first stage: a mutant they kill is killed by theorems/; survivors run theorems/ whole)")
    args = parser.parse_args()
    first = [path for path in args.first.split(",") if path]
    outside = [path for path in first if not path.startswith("theorems/")]
    if outside:
        parser.error(f"--first takes files under theorems/ only (a kill must count for theorems/): {outside}")
    chosen = [m for m in MUTATIONS if any(part in m.id for part in args.k.split(","))]
    if args.list:
        for m in chosen:
            print(f"{m.id:40s} {m.file:40s} {m.description}")
        return 0
    return run(chosen, args.verbose, args.worktree, first)


if __name__ == "__main__":
    sys.exit(main())
