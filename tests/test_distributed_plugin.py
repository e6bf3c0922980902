"""--ssl-world-size end to end: a user's gathered loss, from the user's own folder, in a fresh pytest process.

The user's package (a GatherLayer NT-Xent and its gradient-less twin) lives in a temporary folder outside the
repository; the run's worker processes must all be gone once pytest has exited.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

USER_LOSS = textwrap.dedent('''
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from dualnet_ssl.regression import two_view


    class Gather(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            out = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
            dist.all_gather(out, x.contiguous())
            return torch.cat(out)

        @staticmethod
        def backward(ctx, grad):
            grad = grad.contiguous()
            dist.all_reduce(grad)
            n = grad.shape[0] // dist.get_world_size()
            return grad[dist.get_rank() * n:(dist.get_rank() + 1) * n]


    def plain(x):
        out = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        out[dist.get_rank()] = x
        return torch.cat(out)


    def nt_xent(z0, z1, temperature, gather):
        on = dist.is_available() and dist.is_initialized()
        rank, n = (dist.get_rank() if on else 0), z0.shape[0]
        q = F.normalize(z0, dim=1)
        k = F.normalize(gather(z1) if on else z1, dim=1)
        return F.cross_entropy(q @ k.T / temperature, torch.arange(n) + rank * n)


    def make_loss(temperature=0.5, plain_gather=False):
        fn = lambda z0, z1: nt_xent(z0, z1, temperature, plain if plain_gather else Gather.apply)
        return two_view(fn, symmetric=False, same_view_negatives=False, normalises=True, world_size=2)
''')

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
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    assert not alive, f"workers outlived the pytest run: {alive}"


def test_distributed_world_size_option_from_a_user_folder(tmp_path):
    """The gradient-less gather fails with its class named (exit 1); the workers are gone after the run."""
    result = _run_user(tmp_path, "--ssl-loss", "userlib.losses:make_loss", "--ssl-loss-kwargs",
                       '{"plain_gather": true}', "--ssl-world-size", "2", "-k", "distributed_gradient")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "distributed_gradient_W2 FAILED" in out and "missing_gather_gradient" in out, out
    _pids_gone(tmp_path)

