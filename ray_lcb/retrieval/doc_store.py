"""The document store: Parquet files of id, text, url, score and embedding, addressed by global row.

``index_job`` writes it (one Ray Data pass: normalise columns, embed, write) and
reads its embedding column back shard by shard to fill FAISS; ``Retriever``
looks texts up by the global rows FAISS returns. Global row order is the store
files in manifest order, then rows in file order. A lookup decodes only the
row groups (``IndexConfig.store_row_group_size`` rows) that hold the hits, and
only the columns asked for: the embedding column is never read for texts.

Shapes: N rows, D embedding dim.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ray_lcb.retrieval.manifest import StoreFile

DOCUMENT_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("url", pa.string()),
                             ("score", pa.float64())])
REQUIRED_COLUMNS = ("id", "text")


def normalize_documents(table: pa.Table) -> pa.Table:
    """Select and type the store columns of a corpus batch.

    ``id`` is cast to string; a null text becomes "" (embedded as an empty
    document rather than failing a long job on one bad row); a missing ``url``
    or ``score`` column becomes nulls.
    """
    columns = []
    for field in DOCUMENT_SCHEMA:
        if field.name in table.column_names:
            column = table.column(field.name).cast(field.type)
        else:
            column = pa.nulls(table.num_rows, field.type)
        if field.name == "text":
            column = pc.fill_null(column, "")
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=DOCUMENT_SCHEMA)


def embeddings_column(vectors_ND: np.ndarray) -> pa.FixedSizeListArray:
    """[N, D] float32 as an Arrow fixed-size-list column (readable by pandas, datasets, DuckDB)."""
    vectors_ND = np.ascontiguousarray(vectors_ND, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors_ND.reshape(-1)), vectors_ND.shape[1])


def to_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """An embedding column back to [N, D] float32."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    dim = array.type.list_size
    return array.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)


def embedding_dim(path: Path) -> int:
    """D of a store file's embedding column, from its schema."""
    return pq.ParquetFile(path).schema_arrow.field("embedding").type.list_size


def list_store_files(store_dir: Path) -> list[StoreFile]:
    """The store's Parquet files in global-row order (sorted names), with row counts from their footers."""
    files = sorted(store_dir.glob("*.parquet")) if store_dir.is_dir() else []
    return [StoreFile(file=f.name, num_rows=pq.ParquetFile(f).metadata.num_rows) for f in files]


class RowGroup(NamedTuple):
    path: Path
    index: int  # row group number inside the file
    first_row: int  # global row of its first row
    num_rows: int


def list_row_groups(store_dir: Path, store_files: list[StoreFile]) -> list[RowGroup]:
    """Every row group of the store, in global-row order (read from the Parquet footers only).

    Raises:
        ValueError: a store file is missing or holds another number of rows than the manifest says.
    """
    groups, first_row = [], 0
    for store_file in store_files:
        path = store_dir / store_file.file
        if not path.is_file():
            raise ValueError(f"document store file '{path}' is missing; rebuild the index folder")
        meta = pq.ParquetFile(path).metadata
        if meta.num_rows != store_file.num_rows:
            raise ValueError(f"document store file '{path}' has {meta.num_rows} rows, manifest.json says "
                             f"{store_file.num_rows}; rebuild the index folder")
        for i in range(meta.num_row_groups):
            groups.append(RowGroup(path, i, first_row, meta.row_group(i).num_rows))
            first_row += meta.row_group(i).num_rows
    return groups


def read_embeddings(groups: list[RowGroup]) -> np.ndarray:
    """The embedding column of consecutive row groups, as [N, D] float32."""
    tables = [pq.ParquetFile(g.path).read_row_group(g.index, columns=["embedding"]) for g in groups]
    return to_matrix(pa.concat_tables(tables).column("embedding"))


def write_id_map(store_dir: Path, store_files: list[StoreFile], path: Path) -> None:
    """Write the id of every global row to an Arrow IPC file (uncompressed, so it memory-maps), file by file.

    Raises:
        ValueError: naming a few duplicated ids (rows with one id could not be told apart).
    """
    tmp = path.with_name(path.name + ".tmp")
    # An uncompressed IPC file memory-maps: a retriever reads ids of hits without loading all 10M of them.
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, pa.schema([("id", pa.string())])) as writer:
        for store_file in store_files:
            writer.write_table(pq.read_table(store_dir / store_file.file, columns=["id"]))
    ids = read_id_map(tmp)
    if pc.count_distinct(ids).as_py() != len(ids):
        counts = pc.value_counts(ids)
        duplicated = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")[:5].to_pylist()
        tmp.unlink()
        raise ValueError(f"document ids must be unique, but {duplicated} (and maybe more) occur several times; "
                         f"deduplicate the corpus (e.g. with ray_lcb.corpus) before indexing")
    tmp.replace(path)


def read_id_map(path: Path) -> pa.ChunkedArray:
    """The id column of an id map file, memory-mapped (no copy into RAM)."""
    if not path.is_file():
        raise ValueError(f"id map '{path}' is missing; rebuild the index folder")
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all().column("id")


class DocumentStore:
    """Random access to store rows by global row number, decoding whole row groups through an LRU cache.

    Memory: the row-group offsets (a few ints per row group) plus at most
    ``max_cached_row_groups`` decoded row groups of the requested columns.
    """

    def __init__(self, store_dir: Path, store_files: list[StoreFile], max_cached_row_groups: int = 32):
        self.groups = list_row_groups(store_dir, store_files)
        self._first_rows = [g.first_row for g in self.groups]
        self._files: dict[Path, pq.ParquetFile] = {}
        self._cache: OrderedDict[int, pa.Table] = OrderedDict()
        self._max_cached = max_cached_row_groups
        self.num_rows = sum(f.num_rows for f in store_files)

    def lookup(self, rows: np.ndarray, columns: tuple[str, ...] = ("id", "text", "url")) -> list[dict]:
        """The requested columns of each global row, in the order given.

        Raises:
            IndexError: a row is outside the store.
        """
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.num_rows):
            raise IndexError(f"store rows must lie in [0, {self.num_rows}); got {rows.min()}..{rows.max()}")
        out: list[dict | None] = [None] * len(rows)
        by_group: dict[int, list[int]] = {}
        for i, row in enumerate(rows):
            by_group.setdefault(bisect.bisect_right(self._first_rows, int(row)) - 1, []).append(i)
        for g, positions in by_group.items():
            table = self._row_group(g, columns)
            local = pa.array([int(rows[i]) - self.groups[g].first_row for i in positions])
            for i, record in zip(positions, table.take(local).to_pylist()):
                out[i] = record
        return out  # type: ignore[return-value]

    def _row_group(self, g: int, columns: tuple[str, ...]) -> pa.Table:
        cached = self._cache.get(g)
        if cached is not None and all(c in cached.column_names for c in columns):
            self._cache.move_to_end(g)
            return cached.select(list(columns))
        group = self.groups[g]
        if group.path not in self._files:
            self._files[group.path] = pq.ParquetFile(group.path, memory_map=True)
        table = self._files[group.path].read_row_group(group.index, columns=list(columns))
        self._cache[g] = table
        if len(self._cache) > self._max_cached:
            self._cache.popitem(last=False)
        return table
