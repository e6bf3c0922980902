"""--ssl-world-size end to end: a user's gathered loss, from the user's own folder, in a fresh pytest process.

The user's package (a GatherLayer NT-Xent and its gradient-less twin) lives in a temporary folder outside the
repository; the run's worker processes must all be gone once pytest has exited.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from dualnet_ssl.distributed import still_running

ROOT = Path(__file__).resolve().parents[1]

USER_LOSS = (ROOT / "examples" / "mydistributed.py").read_text()
"""The worked example of docs/REGRESSION.md (its GatherLayer NT-Xent and gradient-less twin), copied into the user's
own folder."""

PIDS_CONFTEST = textwrap.dedent('''
    def pytest_sessionfinish(session):
        from dualnet_ssl.regression import distributed
        pids = [pid for pool in distributed._POOLS.values() for pid in pool.pids]
        open("worker_pids.txt", "w").write(" ".join(map(str, pids)))
''')


def _run_user(tmp_path, *args):
    (tmp_path / "userlib").mkdir()
    (tmp_path / "userlib" / "__init__.py").write_text("")
    (tmp_path / "userlib" / "losses.py").write_text(USER_LOSS)
    (tmp_path / "conftest.py").write_text(PIDS_CONFTEST)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)


def _pids_gone(tmp_path):
    pids = [int(p) for p in (tmp_path / "worker_pids.txt").read_text().split()]
    assert pids, "the run started no worker"
    alive = still_running(pids)
    assert not alive, f"workers outlived the pytest run: {alive}"


def test_distributed_world_size_option_from_a_user_folder(tmp_path):
    """The gradient-less gather fails with its class named (exit 1); the workers are gone after the run."""
    result = _run_user(tmp_path, "--ssl-loss", "userlib.losses:make_plain_gather_loss", "--ssl-world-size", "2",
                       "-k", "distributed_gradient")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "distributed_gradient_W2 FAILED" in out and "missing_gather_gradient" in out, out
    _pids_gone(tmp_path)

