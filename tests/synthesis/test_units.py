"""Pure pieces of the synthesis job: chunking, seeds, resume arithmetic, the exactly-once writer."""

import pyarrow.parquet as pq
import pytest

from ray_lcb.synthesis.chunking import chunk_documents, group_texts
from ray_lcb.synthesis.config import SynthesisConfig
from ray_lcb.synthesis.pipeline import numbers_to_run
from ray_lcb.synthesis.records import empty_row
from ray_lcb.synthesis.seeds import CorpusView, plan_long_input_seed, sample_id
from ray_lcb.synthesis.writer import OutputBusyError, ShardWriter
from ray_lcb.text_tokenizer import load_text_tokenizer


def test_chunks_respect_the_token_limit_and_keep_every_word():
    tokenizer = load_text_tokenizer("bundled:smollm2-135m-instruct")
    docs = ["alpha " * 50, "beta " * 700, "gamma " * 30, "delta " * 20]
    chunks = chunk_documents(docs, tokenizer, max_tokens=256)
    assert all(tokenizer.count(c) <= 256 for c in chunks)
    joined = " ".join(chunks)
    for word, count in [("alpha", 50), ("beta", 700), ("gamma", 30), ("delta", 20)]:
        assert joined.count(word) == count
    assert chunks[0].startswith("Document 1:")


def test_group_texts():
    assert group_texts(["a", "b", "c", "d"], [3, 3, 3, 9], 6) == [["a", "b"], ["c"], ["d"]]


def test_seeds_are_deterministic_and_in_range():
    corpus = CorpusView(ids=["a", "b"], texts=["x" * 2000, "y" * 2000], urls=["u1", "u2"])
    config = SynthesisConfig(target_tokens_min=1000, target_tokens_max=2000)
    first = plan_long_input_seed(corpus, config, job_seed=7, number=3)
    assert first == plan_long_input_seed(corpus, config, job_seed=7, number=3)
    assert first["sample_id"] == "li-000003" and 1000 <= first["target_tokens"] <= 2000
    assert len(first["seed_chunk"]) == config.seed_chunk_chars
    others = [plan_long_input_seed(corpus, config, 7, n) for n in range(20)]
    assert len({s["target_tokens"] for s in others}) > 10


def test_resume_arithmetic_never_exceeds_the_target():
    ids = lambda numbers: {sample_id("long_input", n) for n in numbers}  # noqa: E731
    assert numbers_to_run(5, set(), set()) == ([0, 1, 2, 3, 4], [])
    # Round one finished: 2 and 4 dropped -> exactly two replacements, fresh numbers.
    assert numbers_to_run(5, ids([0, 1, 3]), ids([0, 1, 2, 3, 4])) == ([5, 6], [])
    # Killed during the replacements after 6 was kept: only 5 is left.
    assert numbers_to_run(5, ids([0, 1, 3, 6]), ids([0, 1, 2, 3, 4, 6])) == ([5], [])
    assert numbers_to_run(2, ids([0, 1]), ids([0, 1])) == ([], [])
    assert numbers_to_run(4, set(), set(), oversample=0.5) == ([0, 1, 2, 3, 4, 5], [])
    # Reserves follow the started numbers, skipping processed ones; nothing when nothing is needed.
    assert numbers_to_run(4, ids([0]), ids([0, 2]), oversample=0.5, reserve=1.0) == ([1, 3, 4, 5, 6], [7, 8, 9])
    assert numbers_to_run(2, ids([0, 1]), ids([0, 1]), reserve=1.0) == ([], [])


def _row(i, drop=None):
    return empty_row(sample_id=f"li-{i:06d}", data_type="long_input", drop_reason=drop, drop_stage="x" if drop else None,
                     messages=[{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}], kind="long")


def test_writer_commits_atomically_and_cleans_partial_files(tmp_path):
    writer = ShardWriter(tmp_path, samples_per_shard=2)
    with pytest.raises(OutputBusyError):
        ShardWriter(tmp_path, samples_per_shard=2)  # a second job on the same folder is refused
    writer.add(_row(0))
    writer.add(_row(1, drop="instruction_empty"))  # -> shard 0 committed (samples file + ledger)
    writer.add(_row(2))                           # pending, not committed
    assert writer.committed_ids() == ({"li-000000"}, {"li-000001"})
    writer._lock.release()  # simulate a kill: pending rows are lost, committed ones stay
    # A kill between the two renames leaves an orphaned drops file and a tmp file.
    (tmp_path / "data" / "samples-00001.parquet").write_bytes(b"partial")
    (tmp_path / "_state" / "ledger-00001.tmp").write_bytes(b"partial")
    resumed = ShardWriter(tmp_path, samples_per_shard=2)
    assert not (tmp_path / "data" / "samples-00001.parquet").exists()
    assert not list((tmp_path / "data").glob("*.tmp"))
    assert resumed.next_shard == 1 and resumed.committed_ids() == ({"li-000000"}, {"li-000001"})
    resumed.add(_row(2))
    resumed.close()
    table = pq.read_table([str(p) for p in resumed.sample_files()])
    assert sorted(table.column("sample_id").to_pylist()) == ["li-000000", "li-000002"]
