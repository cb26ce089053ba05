"""Training config validation, the RoPE stage plan and the learning-rate schedule."""

import math

import pytest

from ray_lcb.training.config import StageConfig, TrainingConfig, plan_stages
from ray_lcb.training.loop import learning_rate_at


def _config(**overrides):
    base = {"stages": [{"seq_len": 64, "steps": 2}, {"seq_len": 128, "steps": 2}], "sequence_parallel": 2}
    return TrainingConfig.model_validate({**base, **overrides})


def test_valid_config_defaults():
    config = _config()
    assert config.world_size == 2 and config.model == "bundled:smollm2-135m-instruct"


def test_seq_len_not_divisible_by_2sp_names_the_field():
    with pytest.raises(ValueError, match=r"stages\[1\]\.seq_len \(130\) must be a multiple of 2 × sequence_parallel"):
        _config(stages=[{"seq_len": 64, "steps": 1}, {"seq_len": 130, "steps": 1}])


def test_non_increasing_stage_lengths_name_the_field():
    with pytest.raises(ValueError, match=r"stages\[1\]\.seq_len \(64\) must be greater than stages\[0\]\.seq_len"):
        _config(stages=[{"seq_len": 64, "steps": 1}, {"seq_len": 64, "steps": 1}])


def test_num_workers_must_match_sp_times_dp():
    with pytest.raises(ValueError, match=r"num_workers \(3\) must equal data_parallel × sequence_parallel"):
        _config(num_workers=3, data_parallel=2)
    assert _config(num_workers=4, data_parallel=2).world_size == 4


def test_unknown_and_out_of_range_fields_are_errors():
    with pytest.raises(ValueError, match="sequence_paralel"):
        _config(sequence_paralel=2)
    with pytest.raises(ValueError, match="steps"):
        _config(stages=[{"seq_len": 64, "steps": 0}])
    with pytest.raises(ValueError, match="stages"):
        _config(stages=[])
    with pytest.raises(ValueError, match="must be unique"):
        _config(stages=[{"seq_len": 64, "steps": 1, "name": "a"}, {"seq_len": 128, "steps": 1, "name": "a"}])


def test_rope_base_times_4_per_doubling_over_the_context_so_far():
    stages = [StageConfig(seq_len=n, steps=1) for n in (8192, 16384, 65536)]
    plans = plan_stages(stages, base_rope_theta=100_000, base_max_positions=8192)
    assert [p.rope_theta for p in plans] == pytest.approx([100_000, 400_000, 6_400_000])
    assert [p.max_position_embeddings for p in plans] == [8192, 16384, 65536]
    assert [p.name for p in plans] == ["stage0-8192", "stage1-16384", "stage2-65536"]
    # Shorter than the native context: the base and the context never shrink.
    short = plan_stages([StageConfig(seq_len=1024, steps=1)], 100_000, 8192)[0]
    assert (short.rope_theta, short.max_position_embeddings) == (100_000, 8192)
    # An explicit base wins, later stages grow from it; a non-power-of-2 ratio gives theta × ratio².
    explicit = plan_stages([StageConfig(seq_len=16384, steps=1, rope_theta=1e6), StageConfig(seq_len=24576, steps=1)],
                           100_000, 8192)
    assert explicit[0].rope_theta == 1e6 and explicit[1].rope_theta == pytest.approx(1e6 * 1.5 ** 2)


def test_learning_rate_warmup_then_constant_or_cosine():
    stage = StageConfig(seq_len=64, steps=10, learning_rate=1.0, warmup_steps=4)
    assert [learning_rate_at(s, stage) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    cosine = StageConfig(seq_len=64, steps=10, learning_rate=1.0, warmup_steps=0, schedule="cosine")
    assert learning_rate_at(0, cosine) == 1.0
    assert learning_rate_at(5, cosine) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert learning_rate_at(9, cosine) > 0.1
