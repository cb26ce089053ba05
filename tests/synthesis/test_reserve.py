"""Reserve seeds: drops are replaced within the round, and a reserve nobody needs never runs."""

import pyarrow.parquet as pq
import ray

from ray_lcb.corpus import CorpusConfig
from ray_lcb.retrieval import IndexConfig
from ray_lcb.serving.config import LLMServingConfig
from ray_lcb.synthesis.config import SynthesisConfig
from ray_lcb.synthesis.pipeline import SynthesisInputs, run_synthesis
from ray_lcb.synthesis.reserve import SeedGate


def _pending(ref) -> bool:
    return not ray.wait([ref], timeout=0.5)[0]


def test_each_drop_releases_one_reserve_of_its_type(ray_session):
    gate = SeedGate.remote({"long_input": ["li-0", "li-1", "li-2", "li-3"], "long_output": ["lo-0", "lo-1"]},
                           needed={"long_input": 2, "long_output": 1}, started={"long_input": 2, "long_output": 1},
                           oversample=0.0)
    assert ray.get([gate.admit.remote("li-0"), gate.admit.remote("li-1"), gate.admit.remote("lo-0")]) == [True] * 3
    li_2, li_3, lo_1 = gate.admit.remote("li-2"), gate.admit.remote("li-3"), gate.admit.remote("lo-1")
    assert _pending(li_2) and _pending(li_3) and _pending(lo_1)

    ray.get(gate.note_drop.remote("lo-0"))  # a long-output drop releases the long-output reserve only
    assert ray.get(lo_1) is True and _pending(li_2)
    ray.get([gate.note_drop.remote("li-0"), gate.note_drop.remote("li-0")])  # one drop, reported twice
    ready, [waiting] = ray.wait([li_2, li_3], num_returns=1, timeout=10)
    assert ray.get(ready) == [True] and _pending(waiting)  # one place, to whichever reserve asked first
    started = "li-2" if ready[0] == li_2 else "li-3"
    assert ray.get(gate.admit.remote(started)) is True  # a retried task of a started reserve is let through
    ray.get(gate.note_kept.remote("li-1"))  # one still needed, one in flight: nothing more starts
    assert _pending(waiting)
    assert ray.get(gate.released.remote()) == {"long_input": 3, "long_output": 2}

    # The type has all its samples: its waiting reserve is turned away, later drops release nothing.
    ray.get(gate.note_kept.remote(started))
    assert ray.get(waiting) is False
    assert ray.get(gate.released.remote())["long_input"] == 3
    assert ray.get(gate.admit.remote("li-9")) is True  # a row the gate does not hold back
    ray.kill(gate)


def test_oversample_keeps_extra_rows_in_flight_for_the_last_samples(ray_session):
    ids = [f"li-{i}" for i in range(8)]
    gate = SeedGate.remote({"long_input": ids}, needed={"long_input": 3}, started={"long_input": 5}, oversample=0.5)
    reserve = gate.admit.remote("li-5")
    # One at a time: the gate decides at each report (a drop first would find fewer rows in flight than wanted).
    ray.get(gate.note_kept.remote("li-0"))
    ray.get(gate.note_kept.remote("li-1"))
    ray.get(gate.note_drop.remote("li-2"))
    assert _pending(reserve)  # one needed, two in flight: ceil(1 * 1.5) = 2 already run
    ray.get(gate.note_drop.remote("li-3"))  # one left in flight: a reserve joins it
    assert ray.get(reserve) is True and ray.get(gate.released.remote()) == {"long_input": 6}
    ray.kill(gate)


def test_drops_are_replaced_by_reserves_within_one_round(ray_session, tmp_path, tiny_synthesis):
    # A 2-token budget cuts every instruction short, and no retries: each seed drops at the instruction
    # stage. With one round, only reserves released by those drops can run after the first seed.
    config = SynthesisConfig(**{**tiny_synthesis, "num_samples": 1, "num_long_output_samples": 0,
                                "instruction_max_tokens": 2, "max_retries": 0, "oversample": 0, "reserve": 3,
                                "max_rounds": 1})
    lines = []
    report = run_synthesis(config, SynthesisInputs(corpus=CorpusConfig(), llm=LLMServingConfig(), index=IndexConfig()),
                           tmp_path, progress=lines.append)
    assert [line for line in lines if line.startswith("round")] == ["round 1: 1 seeds, 3 more in reserve"]
    assert report["samples"]["total"] == 0
    assert report["dropped"]["by_reason"] == {"instruction_truncated": 4}
    ledger = pq.read_table(sorted((tmp_path / "_state").glob("ledger-*.parquet"))).to_pylist()
    assert sorted(r["sample_id"] for r in ledger) == ["li-000000", "li-000001", "li-000002", "li-000003"]


def test_a_reserve_asked_for_twice_takes_one_place(ray_session):
    # When a node dies, the admit call of its stage actor still waits in the gate while Ray retries the
    # task elsewhere and asks again for the same reserve: one released place must let both through.
    gate = SeedGate.remote({"long_input": ["li-0", "li-1", "li-2"]}, needed={"long_input": 1},
                           started={"long_input": 1}, oversample=0.0)
    first_ask, second_ask = gate.admit.remote("li-1"), gate.admit.remote("li-1")
    assert _pending(first_ask) and _pending(second_ask)
    ray.get(gate.note_drop.remote("li-0"))
    assert ray.get([first_ask, second_ask], timeout=30) == [True, True]
    assert ray.get(gate.released.remote()) == {"long_input": 2}
    other = gate.admit.remote("li-2")
    assert _pending(other)  # the reserve asked for twice took one place, not two
    ray.get(gate.note_kept.remote("li-1"))
    assert ray.get(other) is False
    ray.kill(gate)
