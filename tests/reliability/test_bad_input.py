"""Bad input: one corpus holding every kind of bad record, and the CLI on unreadable corpora.

(Malformed JSON, empty, too short, non-text and duplicate-text records are in
tests/test_corpus.py; config errors in tests/test_config.py; garbage LLM
output in tests/synthesis/.)
"""

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq

from ray_lcb.corpus import CorpusConfig, content_id, prepare_corpus

PARAGRAPH = "Long context models learn from long documents that hold many facts. "
GOOD_A, GOOD_B, GOOD_TXT = PARAGRAPH * 6 + "A.", PARAGRAPH * 6 + "B.", PARAGRAPH * 6 + "Text file."


def _write_mixed_corpus(root):
    """A folder with a JSONL file and a folder of .txt files: 3 good records, 8 bad ones."""
    root.mkdir()
    huge = " ".join(["word"] * 4_000_000)  # 20 MB on one line
    lines = [
        json.dumps({"id": "a", "text": GOOD_A, "url": "https://example.org/a"}).encode(),
        json.dumps({"text": GOOD_B}).encode(),                                  # no id: derived from content
        json.dumps({"id": "huge", "text": huge}).encode(),                      # too_long
        b"\x89PNG\x00\x00\x00\rIHDR\x00\x00\x01\xff\xd8\xff\xe0 raw bytes",     # invalid_utf8 (not text at all)
        json.dumps({"id": "nul", "text": "GIF89a\x00\x01\x00\x00\x02" * 40}).encode(),  # binary (NUL bytes)
        b'{"id": "latin1", "text": "caf\xe9 ' + b"au lait " * 40 + b'"}',       # invalid_utf8
        json.dumps({"id": "no-text", "url": "https://example.org/missing"}).encode(),  # missing_text
        json.dumps({"id": "a", "text": PARAGRAPH * 6 + "Same id, other text."}).encode(),  # duplicate_id
    ]
    (root / "docs.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert len(lines[2]) > 20_000_000
    txt = root / "txt"
    txt.mkdir()
    (txt / "good.txt").write_text(GOOD_TXT)
    (txt / "blob.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" * 50)       # binary
    (txt / "latin1.txt").write_bytes("Crème brûlée, déjà vu. ".encode("latin-1") * 20)  # invalid_utf8


def test_every_bad_record_is_skipped_and_counted_the_rest_kept(tmp_path):
    _write_mixed_corpus(tmp_path / "corpus")
    prepared = prepare_corpus(CorpusConfig(source=str(tmp_path / "corpus"), split_paragraphs=False), tmp_path / "out")
    report = prepared.report.as_dict()
    assert report["skipped"] == {"too_long": 1, "invalid_utf8": 3, "binary": 2, "missing_text": 1, "duplicate_id": 1}
    assert report["num_read"] == 11 and report["num_kept"] == 3
    rows = pq.read_table(prepared.files).to_pylist()
    assert [(r["id"], r["text"]) for r in rows] == [("a", GOOD_A.strip()), (content_id(GOOD_B.strip()), GOOD_B.strip()),
                                                     (content_id(GOOD_TXT.strip()), GOOD_TXT.strip())]
    assert rows[0]["url"] == "https://example.org/a" and rows[2]["url"] == "txt/good.txt"


def _synthesize(corpus, tmp_path):
    env = {**os.environ, "RAY_LCB_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "ray_lcb.cli", "synthesize", "--corpus", str(corpus),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120, env=env)


def _assert_one_clear_line(proc, *needles):
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    messages = [line for line in proc.stderr.splitlines() if line.startswith("ray-lcb:")]
    assert len(messages) == 1 and all(n in messages[0] for n in needles), proc.stderr[-3000:]
    assert "Started a local Ray instance" not in proc.stderr  # failed before Ray started


def test_cli_on_a_missing_corpus_fails_with_one_line(tmp_path):
    missing = tmp_path / "no_such_corpus.jsonl"
    _assert_one_clear_line(_synthesize(missing, tmp_path), str(missing), "does not exist")


def test_cli_on_a_truncated_parquet_fails_with_one_line(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": [GOOD_A] * 200}), good)
    broken = tmp_path / "truncated.parquet"
    broken.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _assert_one_clear_line(_synthesize(broken, tmp_path), str(broken), "cannot read Parquet file")
