"""Suite-wide pytest configuration: options, markers, Hypothesis profiles, device and seed fixtures."""
from __future__ import annotations

import os
import secrets

import pytest
import torch
from hypothesis import HealthCheck, settings

from dualnet_ssl.compare import Context
from dualnet_ssl.seeding import seed_from_text

# Regression-check mode: --ssl-loss / --ssl-model / --ssl-report (docs/REGRESSION.md).
# Regression-check mode (--ssl-loss ...) is the installed plugin dualnet_ssl.pytest_plugin (pytest11 entry point),
# which loads dualnet_ssl.regression.plugin only when an --ssl-* option is given.

# The fixtures given to Hypothesis tests (device, seed, repro) are pure, so sharing them across examples is safe.
_SUPPRESSED = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile("dev", deadline=None, print_blob=True, max_examples=25,
                          suppress_health_check=_SUPPRESSED)
settings.register_profile("ci", deadline=None, print_blob=True, max_examples=25, derandomize=True, database=None,
                          suppress_health_check=_SUPPRESSED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


# The suite's tensors are small: OpenMP thread start-up and contention cost far more than they save
# (measured: a 6-layer width-64 forward pass took 0.09 s with 2 threads, 0.0013 s with 1, on 2 busy cores).
torch.set_num_threads(int(os.environ.get("DUALNET_TORCH_THREADS", "1")))


def pytest_addoption(parser):
    group = parser.getgroup("dualnet", "dual deep network theory checks")
    group.addoption("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="where networks run: auto = cuda when available, else cpu (default: auto)")
    group.addoption("--runslow", action="store_true", default=False,
                    help="also run tests marked slow (heavier cases; opt-in)")


def pytest_configure(config):
    # Benchmarks run once, as correctness checks, unless timings are asked for (--benchmark-only/--benchmark-enable).
    # pytest-benchmark reads this option in its own (trylast) pytest_configure, after this hook.
    if not (config.getoption("benchmark_only", False) or config.getoption("benchmark_enable", False)):
        config.option.benchmark_disable = True
    config.addinivalue_line("markers", "slow: heavier case, opt-in with --runslow")
    config.addinivalue_line("markers", "gpu: needs CUDA; runs only when a GPU is present")


def pytest_collection_modifyitems(config, items):
    run_slow = config.getoption("--runslow")
    has_cuda = torch.cuda.is_available()
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow case: opt in with --runslow"))
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs CUDA: no GPU visible to torch here"))


@pytest.fixture(scope="session")
def device(request) -> torch.device:
    """CUDA (TF32 off, so float64/float32 identities keep full precision) when present, else CPU."""
    choice = request.config.getoption("--device")
    if choice == "cuda" and not torch.cuda.is_available():
        pytest.exit("--device cuda was given but torch sees no CUDA device", returncode=4)
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        return torch.device("cuda")
    return torch.device("cpu")


# Opt-in, to find tests that pass for one seed only (as linear_operator's unlocked seeds): with
# DUALNET_UNLOCK_SEED=1 every `seed` fixture draws a fresh seed; DUALNET_SEED=<n> pins every one to n, which is
# how a failure of an unlocked run is reproduced (its repro line names the seed).
_UNLOCK_SEED = os.environ.get("DUALNET_UNLOCK_SEED", "") not in ("", "0")
_PINNED_SEED = os.environ.get("DUALNET_SEED")


@pytest.fixture
def seed(request) -> int:
    """A per-test seed from the test id (adler32, stable across runs and machines), unless unlocked or pinned."""
    if _PINNED_SEED is not None:
        return int(_PINNED_SEED)
    if _UNLOCK_SEED:
        drawn = secrets.randbelow(2**31)
        request.node.user_properties.append(("seed", drawn))
        return drawn
    return seed_from_text(request.node.nodeid)


def _seed_prefix(request) -> str:
    drawn = dict(request.node.user_properties).get("seed")
    return f"DUALNET_SEED={drawn} " if drawn is not None else ""


@pytest.fixture
def repro(request, device):
    """Build the reproduction line a failure message carries: the test id, the device and any case details. It is
    a ``Context``: the seed (a ``seed=`` detail) and the reproduce command are also fields of a failure record."""
    def line(**details) -> Context:
        case = ", ".join(f"{k}={v}" for k, v in details.items())
        command = f"{_seed_prefix(request)}pytest '{request.node.nodeid}' --device {device.type}"
        seed = details.get("seed")
        return Context(f"{case}; reproduce: {command}", seed=seed if isinstance(seed, int) else None,
                       reproduce=command)
    return line


def pytest_runtest_makereport(item, call):
    """In an unlocked run, a failing test's report names the seed it drew, so the failure can be reproduced."""
    drawn = dict(item.user_properties).get("seed")
    if drawn is not None and call.excinfo is not None and call.when == "call":
        item.add_report_section("call", "seed", f"unlocked seed: reproduce with DUALNET_SEED={drawn} pytest "
                                                f"'{item.nodeid}'")


@pytest.fixture(scope="session")
def hltm_suite_runs(device):
    """``runs(hid=10)``: the HLTM default training runs (dualnet_ssl.hltm.suite_runs), trained on ``device``
    once per session on first use and shared by every test that needs them."""
    from dualnet_ssl.hltm import suite_runs
    trained = {}

    def runs(hid: int = 10) -> dict:
        if hid not in trained:
            trained[hid] = suite_runs(hid, device=device)
        return trained[hid]
    return runs
