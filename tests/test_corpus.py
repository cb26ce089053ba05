import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_lcb.corpus import CorpusConfig, CorpusError, normalise_text, prepare_corpus, read_corpus

LONG = "Long context models need long training data. " * 10  # > min_chars


def test_offline_corpus(tmp_path):
    prepared = prepare_corpus(CorpusConfig(), tmp_path / "pg")
    table = pq.read_table(prepared.files)
    assert prepared.report.num_read == 49 and table.num_rows > 200  # 49 essays -> paragraph groups
    assert set(table.column_names) == {"id", "text", "url", "score"}
    ids = table.column("id").to_pylist()
    assert len(set(ids)) == len(ids)
    texts = table.column("text").to_pylist()
    assert all(200 <= len(t) <= 3000 for t in texts)
    assert not any("accelerating.We" in t for t in texts)  # glued sentences repaired
    # Idempotent: a second call reuses the folder and the same ids.
    again = prepare_corpus(CorpusConfig(), tmp_path / "pg")
    assert pq.read_table(again.files).column("id").to_pylist() == ids


def test_malformed_records_are_skipped_and_counted(tmp_path):
    src = tmp_path / "docs.jsonl"
    lines = [
        json.dumps({"text": LONG, "url": "a"}).encode(),
        json.dumps({"text": "   \n\t  "}).encode(),           # whitespace only -> empty
        json.dumps({"text": ""}).encode(),                    # empty
        json.dumps({"url": "no text"}).encode(),              # missing text
        json.dumps({"text": 42}).encode(),                    # non-text
        b'{"text": "broken json',                             # malformed
        b'{"text": "caf\xe9 ' + b"x" * 300 + b'"}',           # invalid UTF-8
        json.dumps({"text": LONG + " "}).encode(),            # duplicate after normalisation
        json.dumps({"text": "too short"}).encode(),
        json.dumps({"text": "x" * 3_000_000}).encode(),       # over max_chars
        json.dumps({"id": "doc-7", "text": LONG + " seven"}).encode(),
        json.dumps({"id": "doc-7", "text": LONG + " other"}).encode(),  # duplicate id
    ]
    src.write_bytes(b"\n".join(lines) + b"\n")
    prepared = prepare_corpus(CorpusConfig(source=str(src), split_paragraphs=False), tmp_path / "out")
    report = prepared.report.as_dict()
    assert report["num_kept"] == 2 and report["num_read"] == 12
    assert report["skipped"] == {"empty": 2, "missing_text": 1, "non_text": 1, "malformed_json": 1,
                                 "invalid_utf8": 1, "duplicate_text": 1, "too_short": 1, "too_long": 1,
                                 "duplicate_id": 1}
    rows = pq.read_table(prepared.files).to_pylist()
    assert [r["id"] for r in rows][1] == "doc-7"
    assert len(rows[0]["id"]) == 20  # derived from content


def test_txt_folder_and_parquet(tmp_path):
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "a.txt").write_text("First   paragraph " + LONG + "\n\n\nSecond paragraph.")
    (folder / "b.txt").write_bytes(b"\x00\x01binary")
    (folder / "c.txt").write_bytes(b"\xff\xfe not utf8 " * 40)
    prepared = prepare_corpus(CorpusConfig(source=str(folder), split_paragraphs=False), tmp_path / "o1")
    assert prepared.report.num_kept == 1 and prepared.report.skipped == {"binary": 1, "invalid_utf8": 1}
    assert pq.read_table(prepared.files).column("url").to_pylist() == ["a.txt"]

    parquet = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": [LONG, None, LONG + "!"], "score": [3.5, 1.0, 2.0]}), parquet)
    prepared = prepare_corpus(CorpusConfig(source=str(parquet), split_paragraphs=False), tmp_path / "o2")
    assert prepared.report.num_kept == 2 and prepared.report.skipped == {"missing_text": 1}
    assert pq.read_table(prepared.files).column("score").to_pylist() == [3.5, 2.0]


def test_truncated_parquet_and_missing_source_name_the_file(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": [LONG] * 100}), good)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CorpusError, match="broken.parquet"):
        prepare_corpus(CorpusConfig(source=str(broken)), tmp_path / "o")
    with pytest.raises(CorpusError, match="does not exist"):
        prepare_corpus(CorpusConfig(source=str(tmp_path / "nowhere")), tmp_path / "o3")
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"text": ""}) + "\n")
    with pytest.raises(CorpusError, match="no usable document"):
        prepare_corpus(CorpusConfig(source=str(empty)), tmp_path / "o4")


def test_normalise_text():
    assert normalise_text("a  b\t c\r\n\r\n\n d\x07e") == "a b c\n\nd e"


def test_read_corpus_with_ray(ray_session, tmp_path):
    prepared = prepare_corpus(CorpusConfig(max_documents=30), tmp_path / "pg")
    rows = read_corpus(prepared).take_all()
    assert len(rows) == 30 and {"id", "text", "url", "score"} <= set(rows[0])
