"""Exactly-once output: committed shards and the ledger of finished sample ids.

The driver commits every ``samples_per_shard`` finished rows as
``data/samples-NNNNN.parquet`` (the kept samples, when there are any) and then
``_state/ledger-NNNNN.parquet`` (every id of the shard, kept or dropped, with
the reason). Each file is written under a temporary name and renamed, so it
exists whole or not at all; the ledger is the commit record. On start, tmp
files and samples files without a ledger (a kill between the two renames)
are deleted, and the ledger's ids are skipped, so every sample id ends up in
exactly one committed shard.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from ray_lcb.synthesis.records import LEDGER_SCHEMA, SAMPLE_SCHEMA


class OutputBusyError(RuntimeError):
    """Another synthesis job is writing to the same output folder."""


class ShardWriter:
    def __init__(self, out_dir: Path, samples_per_shard: int):
        self.out_dir = Path(out_dir)
        self.data_dir = self.out_dir / "data"
        self.state_dir = self.out_dir / "_state"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.samples_per_shard = samples_per_shard
        self._lock = FileLock(str(self.out_dir / ".synthesis.lock"))
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise OutputBusyError(f"another synthesis job is writing to '{self.out_dir}'") from None
        self._clean_partial_files()
        self.next_shard = len(self.ledger_files())
        self.pending_samples: list[dict] = []
        self.pending_ledger: list[dict] = []

    def sample_files(self) -> list[Path]:
        return sorted(self.data_dir.glob("samples-*.parquet"))

    def ledger_files(self) -> list[Path]:
        return sorted(self.state_dir.glob("ledger-*.parquet"))

    def _clean_partial_files(self) -> None:
        for tmp in [*self.data_dir.glob("*.tmp"), *self.state_dir.glob("*.tmp")]:
            tmp.unlink()
        committed = {p.name.removeprefix("ledger-") for p in self.ledger_files()}
        for samples in self.sample_files():
            if samples.name.removeprefix("samples-") not in committed:
                samples.unlink()

    def ledger(self) -> list[dict]:
        return [row for f in self.ledger_files() for row in pq.read_table(f).to_pylist()]

    def committed_ids(self) -> tuple[set[str], set[str]]:
        """(kept sample ids, dropped sample ids) of all committed shards."""
        rows = self.ledger()
        return ({r["sample_id"] for r in rows if r["drop_reason"] is None},
                {r["sample_id"] for r in rows if r["drop_reason"] is not None})

    def add(self, row: dict) -> None:
        """Queue a finished row (a sample, or a drop when ``drop_reason`` is set)."""
        self.pending_ledger.append({name: row.get(name) for name in LEDGER_SCHEMA.names})
        if not row["drop_reason"]:
            self.pending_samples.append({name: row.get(name) for name in SAMPLE_SCHEMA.names})
        if len(self.pending_ledger) >= self.samples_per_shard:
            self.commit()

    def commit(self) -> None:
        if not self.pending_ledger:
            return
        name = f"{self.next_shard:05d}.parquet"
        if self.pending_samples:
            _atomic_write(pa.Table.from_pylist(self.pending_samples, schema=SAMPLE_SCHEMA),
                          self.data_dir / f"samples-{name}")
        _atomic_write(pa.Table.from_pylist(self.pending_ledger, schema=LEDGER_SCHEMA), self.state_dir / f"ledger-{name}")
        self.next_shard += 1
        self.pending_samples, self.pending_ledger = [], []

    def close(self) -> None:
        self.commit()
        self._lock.release()


def _atomic_write(table: pa.Table, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
