"""The KV cache of the rows being decoded together, which rows may join or leave at any step.

Each layer keeps keys and values in buffers of ``[row slots, kv heads, columns,
dim]``. Row i holds slot i, its tokens right-aligned so that every row's next
token lands in the same column (``width``); the columns left of a row's own
are padding, hidden by the attention mask, and explicit per-row position ids
keep each row's rotary positions its own, so padding never shifts a row.

Each change copies as little as it can (joining by concatenation and leaving
by index selection copied the whole cache twice: a join cost 100 ms at 12
rows of 1.2k tokens, measured):

* a decode step writes one new column (transformers' ``DynamicLayer``
  concatenates every step: 40% of a 6-row step over 1.5k-token rows);
* a row joins by writing its prompt's keys/values into the next free slot;
  the buffers are rebuilt only when it is longer than ``width`` or no slot is
  free;
* leaving rows' slots are filled by moving the rows after them down in
  place; the buffers are rebuilt narrower only once ``_TRIM_COLUMNS`` leading
  columns are padding for every row (a long row that finished stops costing
  the others attention over its width).

Attention reads the occupied slots whole, spare and padding columns included
(masked): they are contiguous, and CPU matmuls over a narrower view copy it
first (0.84 vs 0.28 ms per layer for 6 rows of 1.5k tokens in bfloat16).
"""

from __future__ import annotations

import inspect

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer


def check_full_attention(config) -> None:
    """Raise unless every cache layer of ``config``'s model is a plain growing KV layer.

    Sliding-window (and other) layers keep their own bookkeeping that left
    padding and row selection would break.
    """
    kinds = {type(layer).__name__ for layer in DynamicCache(config=config).layers}
    if kinds != {DynamicLayer.__name__}:
        raise ValueError(f"continuous batching supports full-attention KV caches only, this model has {sorted(kinds)}")


def cache_keyword(model) -> str:
    """Name of the forward's KV-cache argument (``cache`` in recent transformers 5.x, ``past_key_values`` before)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


_SPARE_COLUMNS = 128  # decode steps between two rebuilds of the buffers
_TRIM_COLUMNS = 256  # padding columns every row shares before the buffers are rebuilt narrower


class _SlotLayer(DynamicLayer):
    """One layer of a :class:`DecodeBatch`: ``keys``/``values`` are views ``[rows, kv heads, width, dim]``
    of its buffers; ``update`` writes one column and returns the occupied slots whole."""

    def __init__(self, key_buffer: torch.Tensor, value_buffer: torch.Tensor):
        super().__init__()
        self.key_buffer, self.value_buffer = key_buffer, value_buffer
        self.device, self.is_initialized = key_buffer.device, True

    def show(self, rows: int, width: int) -> None:
        self.keys, self.values = self.key_buffer[:rows, :, :width], self.value_buffer[:rows, :, :width]

    def place(self, slot: int, prompt: DynamicLayer, width: int) -> None:
        """Write a prompt's keys/values into ``slot``, right-aligned at ``width``."""
        start = width - prompt.keys.shape[-2]
        for buffer, states in ((self.key_buffer, prompt.keys), (self.value_buffer, prompt.values)):
            buffer[slot, :, :start] = 0  # a previous occupant's columns: masked, but never stale
            buffer[slot, :, start:width] = states[0]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        rows, width = self.keys.shape[0], self.keys.shape[-2]
        self.key_buffer[:rows, :, width:width + 1] = key_states
        self.value_buffer[:rows, :, width:width + 1] = value_states
        self.show(rows, width + 1)
        return self.key_buffer[:rows], self.value_buffer[:rows]


class DecodeBatch:
    """Running rows: one ``DynamicCache`` of :class:`_SlotLayer` plus each row's real length in it."""

    def __init__(self, model):
        self.model = model
        self.cache_keyword = cache_keyword(model)
        self.cache: DynamicCache | None = None
        self.lengths: list[int] = []  # real (non-padding) tokens of each row in the cache
        self.width = 0  # the column the next token of every row goes to

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def slots(self) -> int:
        return self.cache.layers[0].key_buffer.shape[0] if self.cache is not None else 0

    @property
    def columns(self) -> int:
        return self.cache.layers[0].key_buffer.shape[-2] if self.cache is not None else 0

    def add(self, cache: DynamicCache) -> None:
        """Append a row whose ``cache`` holds its prompt (batch of one, no padding)."""
        # The prompt's layers, kept aside: the first row's cache object becomes the batch's, and
        # _rebuild replaces its layers with slot buffers.
        length, rows, prompt = cache.get_seq_length(), len(self.lengths), list(cache.layers)
        if rows == self.slots or length > self.width:
            self._rebuild(slots=max(rows + 1, 2 * rows), width=max(self.width, length), like=cache)
        for mine, theirs in zip(self.cache.layers, prompt, strict=True):
            mine.place(rows, theirs, self.width)
        self.lengths.append(length)
        self._show()

    def step(self, tokens: list[int]) -> torch.Tensor:
        """Feed one token per row; return the next-token logits, [rows, vocab]."""
        if self.width + 1 > self.columns:
            self._rebuild(slots=self.slots, width=self.width)
            self._show()
        device = self.model.device
        lengths = torch.tensor(self.lengths, device=device)
        # Per row: its own columns and the new token's (column ``width``); not its padding, not the
        # spare columns that attention also reads. 4-D, so transformers uses it as given.
        columns = torch.arange(self.columns, device=device)[None, :]
        mask = (columns >= (self.width - lengths)[:, None]) & (columns <= self.width)
        out = self.model(input_ids=torch.tensor(tokens, device=device)[:, None], attention_mask=mask[:, None, None, :],
                         position_ids=lengths[:, None], use_cache=True, **{self.cache_keyword: self.cache})
        self.lengths = [n + 1 for n in self.lengths]
        self.width += 1
        return out.logits[:, -1]

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (indices, in order); the kept rows move down to the first slots."""
        if not rows:
            self.cache, self.lengths, self.width = None, [], 0
            return
        if rows == list(range(len(self.lengths))):
            return  # nobody left: nothing moves
        for slot, row in enumerate(rows):
            if slot != row:
                for layer in self.cache.layers:
                    layer.key_buffer[slot] = layer.key_buffer[row]
                    layer.value_buffer[slot] = layer.value_buffer[row]
        self.lengths = [self.lengths[i] for i in rows]
        if self.width - max(self.lengths) >= _TRIM_COLUMNS:
            self._rebuild(slots=self.slots, width=max(self.lengths))
        self._show()

    def _show(self) -> None:
        for layer in self.cache.layers:
            layer.show(len(self.lengths), self.width)

    def _rebuild(self, *, slots: int, width: int, like: DynamicCache | None = None) -> None:
        """Fresh zeroed buffers of ``slots`` rows with the current rows right-aligned at ``width`` (their
        leading padding cut when narrower) and spare columns; ``like``: the first row's prompt cache,
        which gives the shapes (and becomes the batch's cache) when there is none yet."""
        rows, kept = len(self.lengths), min(self.width, width)
        source = self.cache or like
        layers = []
        for layer in source.layers:
            buffers = []
            for states in (layer.keys, layer.values):
                buffer = states.new_zeros((slots, states.shape[1], width + _SPARE_COLUMNS, states.shape[-1]))
                if self.cache is not None:
                    buffer[:rows, :, width - kept:width] = states[:rows, :, self.width - kept:self.width]
                buffers.append(buffer)
            layers.append(_SlotLayer(*buffers))
        source.layers = layers
        self.cache, self.width = source, width
