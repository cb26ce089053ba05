"""Zigzag sharding: the layout, the round trip and the divisibility error."""

import pytest
import torch

from ray_lcb.training.zigzag import zigzag_indices, zigzag_shard, zigzag_unshard


def test_layout_world_4_holds_head_and_tail_chunks():
    x = torch.arange(16).unsqueeze(0)  # 8 chunks of 2 tokens: c_i = [2i, 2i+1]
    shards = [zigzag_shard(x, rank, 4) for rank in range(4)]
    assert shards[0].tolist() == [[0, 1, 14, 15]]  # c0, c7
    assert shards[1].tolist() == [[2, 3, 12, 13]]  # c1, c6
    assert shards[2].tolist() == [[4, 5, 10, 11]]  # c2, c5
    assert shards[3].tolist() == [[6, 7, 8, 9]]  # c3, c4
    assert zigzag_indices(16, 1, 4).tolist() == [2, 3, 12, 13]


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("dim", [0, 1, 2])
def test_round_trip(world_size, dim):
    shape = [2, 3, 5]
    shape[dim] = 2 * world_size * 3
    x = torch.randn(shape)
    shards = [zigzag_shard(x, rank, world_size, dim=dim) for rank in range(world_size)]
    assert all(s.shape[dim] == shape[dim] // world_size for s in shards)
    assert torch.equal(zigzag_unshard(shards, dim=dim), x)


def test_every_position_held_once():
    held = torch.cat([zigzag_indices(24, r, 3) for r in range(3)])
    assert sorted(held.tolist()) == list(range(24))


def test_sequence_not_divisible_by_2w_is_an_error():
    with pytest.raises(ValueError, match=r"not divisible by 2 \* world_size = 8"):
        zigzag_shard(torch.zeros(1, 12), 0, 4)
    with pytest.raises(ValueError, match="rank 4 is outside"):
        zigzag_shard(torch.zeros(1, 16), 4, 4)
    with pytest.raises(ValueError, match="same even length"):
        zigzag_unshard([torch.zeros(1, 4), torch.zeros(1, 6)])
