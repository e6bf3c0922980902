"""Runtime settings shared by the long-running reference routines."""
from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def one_intra_op_thread():
    """Run torch's CPU ops on one thread, restoring the previous count afterwards.

    The suite's tensors are tiny, so intra-op threads only add synchronisation; measured on a loaded 2-core
    machine: 62 ms vs 1.2 ms per 16x16 Cholesky backward (probing), 5-20x slower HLTM training with 2 threads.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
