"""Unit tests of the distributed engine's pure parts (no process started): shards and the store's port retry."""
import socket

import pytest
import torch

from dualnet_ssl.distributed import open_store, rank_and_world, shard_bounds
from dualnet_ssl.errors import BadInput


@pytest.mark.parametrize("n_rows,world_size", [(6, 2), (7, 2), (10, 3), (5, 4), (4, 4)])
def test_shards_split_like_tensor_split(n_rows, world_size):
    """Contiguous, in rank order, equal up to one row with the first ranks taking the extra rows."""
    rows = torch.arange(n_rows)
    expected = [(int(part[0]), int(part[-1]) + 1) for part in torch.tensor_split(rows, world_size)]
    assert shard_bounds(n_rows, world_size) == expected


def test_explicit_unequal_shards():
    assert shard_bounds(7, 3, sizes=[1, 4, 2]) == [(0, 1), (1, 5), (5, 7)]


@pytest.mark.parametrize("n_rows,world_size,sizes", [(3, 4, None), (6, 2, [3, 2]), (6, 2, [6, 0]), (6, 0, None)])
def test_bad_shards_are_refused(n_rows, world_size, sizes):
    with pytest.raises(BadInput, match="shard sizes|world_size must be"):
        shard_bounds(n_rows, world_size, sizes)


def test_without_a_process_group_the_rank_is_zero_of_one():
    assert rank_and_world() == (0, 1)


def test_a_port_in_use_is_skipped():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        store, port, refused = open_store(1, port=taken, timeout=5.0)
        assert refused == [taken] and port != taken
        del store
