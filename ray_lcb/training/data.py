"""Training samples: chat ``messages`` from Parquet to sharded ids and labels.

Input is a folder of Parquet files (the synthesis stage's output, or any SFT
set) with a ``messages`` column (a list of ``{role, content}``) and optionally
a ``kind`` column, ``"long"`` or ``"short"``. Long samples carry loss on every
token, short ones on assistant tokens only (reference/paper.md §5); without a
``kind`` column a sample is long when it has at least ``long_min_tokens`` tokens.

Flow per sample: :func:`tokenize_chat` renders the chat template once and
marks the assistant tokens; :func:`build_example` shifts the labels on the
full sequence, truncates to the stage length, right-pads to a multiple of
``2 × sequence_parallel`` (not to the stage length: short samples would waste
most of the step) and the loop then zigzag-shards ids, positions and labels
alike. Every rank of a sequence-parallel group builds the same sample from the
same seeded order (:func:`sample_order`); data-parallel groups take disjoint
positions of that order. The folder must be readable by every worker (shared
storage on a multi-node cluster).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ray_lcb.training.loss import IGNORE_INDEX

KINDS = ("long", "short")


def tokenize_chat(tokenizer, messages: list[dict]) -> tuple[list[int], list[bool]]:
    """Token ids of a chat and a mask of its assistant tokens.

    The template is rendered once for the whole chat and once per assistant
    turn for the prefix before it (with the generation prompt) and up to its
    end; tokens whose characters fall between those two prefixes belong to the
    reply (its end-of-turn token included). One tokenization of the full text,
    with character offsets, maps the spans to tokens.

    Args:
        tokenizer: a fast transformers tokenizer with a chat template.
        messages: ``[{"role": ..., "content": ...}, ...]``.

    Returns:
        ``(ids, assistant_mask)`` of equal length.

    Raises:
        ValueError: if the template does not render prefixes of the chat as
            prefixes of its text (then assistant spans are not recoverable).
    """
    if not messages or any(not isinstance(m, dict) or "role" not in m or "content" not in m for m in messages):
        raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start_text = (tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
                      if i else "")
        end_text = tokenizer.apply_chat_template(messages[:i + 1], tokenize=False)
        if not text.startswith(start_text) or not text.startswith(end_text):
            raise ValueError("the tokenizer's chat template does not render a chat prefix as a prefix of the chat; "
                             "cannot locate assistant tokens (use a template without look-ahead)")
        spans.append((len(start_text), len(end_text)))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    mask = [any(start <= begin < end for start, end in spans) for begin, _ in offsets]
    return list(ids), mask


@dataclass
class Example:
    """One training sequence before sharding (all tensors ``[1, T]``, T a multiple of 2·W)."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor
    num_tokens: int  # real (unpadded) input tokens
    truncated: bool


def build_example(ids: list[int], assistant_mask: list[bool], kind: str, *, seq_len: int, multiple: int,
                  pad_id: int) -> Example:
    """Shift, mask, truncate and pad one tokenized sample.

    Args:
        ids: the full token ids; assistant_mask: which of them are assistant tokens.
        kind: ``"long"`` (loss on every token) or ``"short"`` (assistant tokens only).
        seq_len: the stage length; longer inputs are cut to it (``truncated`` is set).
        multiple: pad the length up to a multiple of this (``2 × sequence_parallel``).
        pad_id: id of the padding token (its labels are ignored).

    Returns:
        An :class:`Example` with ``input_ids = ids[:-1]``, ``labels = ids[1:]``
        (``-100`` where not counted) and global ``position_ids``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if len(ids) < 2:
        raise ValueError(f"a sample needs at least 2 tokens, got {len(ids)}")
    inputs, targets = ids[:-1], ids[1:]
    counted = [True] * len(targets) if kind == "long" else list(assistant_mask[1:])
    truncated = len(inputs) > seq_len
    inputs, targets, counted = inputs[:seq_len], targets[:seq_len], counted[:seq_len]
    num_tokens = len(inputs)
    padded = -(-num_tokens // multiple) * multiple
    labels = [t if c else IGNORE_INDEX for t, c in zip(targets, counted)]
    pad = padded - num_tokens
    return Example(
        input_ids=torch.tensor([inputs + [pad_id] * pad], dtype=torch.long),
        position_ids=torch.arange(padded, dtype=torch.long).unsqueeze(0),
        labels=torch.tensor([labels + [IGNORE_INDEX] * pad], dtype=torch.long),
        num_tokens=num_tokens,
        truncated=truncated,
    )


class ChatParquetSource:
    """Random access to the chats of a Parquet folder (rows kept as Arrow, converted on demand)."""

    def __init__(self, data_dir: str | Path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        data_dir = Path(data_dir)
        files = sorted(data_dir.rglob("*.parquet")) if data_dir.is_dir() else []
        if not files:
            raise ValueError(f"data: no .parquet files under '{data_dir}'; point --data at the synthesis output folder")
        tables = []
        for path in files:
            names = pq.read_schema(path).names
            if "messages" not in names:
                raise ValueError(f"data: '{path}' has no 'messages' column (columns: {names})")
            table = pq.read_table(path, columns=[c for c in ("messages", "kind") if c in names])
            if "kind" not in names:
                table = table.append_column("kind", pa.nulls(len(table), pa.string()))
            tables.append(table.select(["messages", "kind"]))
        self.table = pa.concat_tables(tables, promote_options="permissive")
        kinds = set(self.table.column("kind").drop_null().unique().to_pylist())
        if not kinds <= set(KINDS):
            raise ValueError(f"data: column 'kind' has values {sorted(kinds - set(KINDS))}; allowed: {KINDS}")
        if len(self.table) == 0:
            raise ValueError(f"data: the Parquet files under '{data_dir}' hold no rows")

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> tuple[list[dict], str | None]:
        row = self.table.slice(index, 1).to_pylist()[0]
        return row["messages"], row["kind"]


def sample_order(num_samples: int, count: int, *, seed: int, stage_index: int) -> np.ndarray:
    """The first ``count`` sample indices of a stage: seeded epoch permutations, concatenated.

    Depends only on its arguments, so a resumed run reads the same samples as
    an uninterrupted one.
    """
    epochs = -(-count // num_samples)
    order = [np.random.default_rng([seed, stage_index, epoch]).permutation(num_samples) for epoch in range(epochs)]
    return np.concatenate(order)[:count]
