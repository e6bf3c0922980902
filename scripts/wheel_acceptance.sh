#!/usr/bin/env bash
# Acceptance of the installable plugin: build a wheel, install it (not editable) into a fresh venv, and check a
# small user package - which has a top-level package named `reference` of its own - with one pytest command.
# Usage: bash scripts/wheel_acceptance.sh   (from the repository root; CI runs it)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Build from a copy of the files git knows (tracked, or untracked and not ignored): no stale build/ can leak in.
mkdir -p "$work/src"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$work/src")
python3 -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$work/src"
python3 -m venv "$work/venv"
# shellcheck disable=SC1091
source "$work/venv/bin/activate"
pip install --quiet torch==2.13.0          # the CPU build on disk; the wheel's range admits it
pip install --quiet "$work"/dist/dualnet_ssl_checks-*.whl "pytest>=7.4"

user="$work/userproj"
mkdir -p "$user/mylib" "$user/reference"
echo "WHO = 'the user'" > "$user/reference/__init__.py"
touch "$user/mylib/__init__.py"
cat > "$user/mylib/losses.py" <<'PY'
import torch
import torch.nn.functional as F

import reference                      # the user's own package, not the suite
from dualnet_ssl.regression import two_view

assert reference.WHO == "the user", "the installed suite shadows the user's 'reference' package"


def nt_xent(z0, z1, temperature):
    n = z0.shape[0]
    z = F.normalize(torch.cat([z0, z1]), dim=1)
    logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))


def make_loss(temperature=0.5):
    return two_view(lambda z0, z1: nt_xent(z0, z1, temperature), normalises=True, reference="infonce",
                    temperature=temperature, temperature_kwarg="temperature")


def make_buggy_loss(temperature=0.5):
    """The classic bug: the self-similarity is left in the softmax."""
    def loss(z0, z1):
        n = z0.shape[0]
        z = F.normalize(torch.cat([z0, z1]), dim=1)
        return F.cross_entropy(z @ z.T / temperature, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
    return two_view(loss, normalises=True, reference="infonce", temperature=temperature,
                    temperature_kwarg="temperature")
PY
cd "$user"
python -c "import dualnet_ssl, sys; assert 'site-packages' in dualnet_ssl.__file__, dualnet_ssl.__file__"

# The installed plugin costs nothing until asked: loading it, and a pytest run of the user's own tests without any
# --ssl-* option, import no torch (the user's test looks at sys.modules while pytest runs).
python -c "import dualnet_ssl.pytest_plugin, sys; assert 'torch' not in sys.modules, 'the entry point imported torch'"
mkdir -p "$work/plain"
cat > "$work/plain/test_users_own.py" <<'PY'
import sys


def test_no_torch_without_ssl_options():
    assert "torch" not in sys.modules, "the dualnet_ssl plugin imported torch in a run without --ssl-* options"
PY
(cd "$work/plain" && pytest -q -p no:cacheprovider test_users_own.py)
echo "wheel acceptance: the installed plugin imports no torch without --ssl-* options"

# The README's command: check the user's loss and write the JSON report.
pytest --ssl-loss mylib.losses:make_loss --ssl-loss-kwargs '{"temperature": 0.2}' --ssl-report report.json
python - <<'PY'
import json
def no_constants(name):
    raise ValueError(f"report.json is not strict JSON: {name}")
report = json.loads(open("report.json").read(), parse_constant=no_constants)
assert report["summary"]["fail"] == 0 and report["summary"]["pass"] > 0, report["summary"]
print("wheel acceptance: correct loss passed,", report["summary"])
PY
# The same command on the buggy twin must fail (exit 1), never crash (exit 3) or pass.
set +e
pytest --ssl-loss mylib.losses:make_buggy_loss -q -p no:cacheprovider > buggy.log 2>&1
status=$?
set -e
if [ "$status" -ne 1 ]; then
  cat buggy.log; echo "wheel acceptance: the buggy loss gave exit $status, expected 1 (tests failed)" >&2; exit 1
fi
echo "wheel acceptance: buggy loss flagged (exit 1)"

# Non-contrastive losses (docs/REGRESSION.md, "Non-contrastive losses"): BYOL and SimSiam as solo-learn writes them,
# each passing; a twin without the target's detach failing.
cat > "$user/mylib/byol.py" <<'PY'
import torch.nn.functional as F

from dualnet_ssl.regression.noncontrastive import non_contrastive


def make_byol():
    return non_contrastive(lambda p, z: 2 - 2 * F.cosine_similarity(p, z.detach(), dim=-1).mean(),
                           reference="normalised_mse", name="byol_loss_func")


def make_simsiam():
    def step(p0, p1, z0, z1):
        return -0.5 * (F.cosine_similarity(p0, z1.detach(), dim=-1).mean()
                       + F.cosine_similarity(p1, z0.detach(), dim=-1).mean())
    return non_contrastive(step, form="pairs", reference="negative_cosine", scale=0.5, name="simsiam symmetric")


def make_buggy_byol():
    return non_contrastive(lambda p, z: 2 - 2 * F.cosine_similarity(p, z, dim=-1).mean(),
                           reference="normalised_mse", name="byol without detach")
PY
for factory in make_byol make_simsiam; do
  pytest --ssl-loss "mylib.byol:$factory" -q -p no:cacheprovider
done
set +e
pytest --ssl-loss mylib.byol:make_buggy_byol -q -p no:cacheprovider > buggy_byol.log 2>&1
status=$?
set -e
if [ "$status" -ne 1 ] || ! grep -q "the target is not detached" buggy_byol.log; then
  cat buggy_byol.log; echo "wheel acceptance: the BYOL twin without detach gave exit $status, expected 1" >&2; exit 1
fi
echo "wheel acceptance: BYOL and SimSiam passed, the BYOL twin without detach flagged (exit 1)"
# Distributed training (docs/REGRESSION.md, "Distributed training"): a gathered loss from the user's folder, run in
# 2 real gloo processes by the installed wheel; the correct GatherLayer passes, the gradient-less gather fails.
cp "$repo/examples/mydistributed.py" "$user/mylib/gathered.py"     # the worked example, in the user's folder
pytest --ssl-loss mylib.gathered:make_gather_layer_loss --ssl-world-size 2 -k distributed_gradient -q -p no:cacheprovider
set +e
pytest --ssl-loss mylib.gathered:make_plain_gather_loss --ssl-world-size 2 -k distributed_gradient -q \
  -p no:cacheprovider > gathered.log 2>&1
status=$?
set -e
if [ "$status" -ne 1 ] || ! grep -q missing_gather_gradient gathered.log; then
  cat gathered.log; echo "wheel acceptance: the gradient-less gather gave exit $status, expected 1 naming it" >&2; exit 1
fi
echo "wheel acceptance: gathered loss passed at W=2, gradient-less gather flagged (exit 1)"
