"""The KV cache of the rows being decoded together, which rows may join or leave at any step.

Each row's cache comes from its own prefill (no padding). Joining left-pads
the shorter side's keys/values to a common width and concatenates along the
batch; the attention mask hides the padding and explicit per-row position ids
keep each row's rotary positions its own, so padding never shifts a row.
Leaving selects the remaining rows and drops the leading columns that are
padding for all of them, so a long row that finished stops costing the
others attention over its width.

Between joins and leaves the cache grows in place: its layers keep spare
columns at the end, so a decode step writes one new column instead of
copying the whole cache (transformers' ``DynamicLayer`` concatenates every
step: 40% of a 6-row step over 1.5k-token rows, measured). Attention reads
the whole buffer, spare columns included (zeros, masked out): CPU matmuls
over a prefix view of a buffer copy it first (0.84 vs 0.28 ms per layer for
6 rows of 1.5k tokens in bfloat16, measured), so the view would cost more
than the few spare columns.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
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


def _left_pad(states: torch.Tensor, width: int) -> torch.Tensor:
    """[batch, heads, seq, dim] zero-padded on the left of ``seq`` to ``width``."""
    return F.pad(states, (0, 0, width - states.shape[-2], 0))


_SPARE_COLUMNS = 128  # decode steps between two reallocations of a layer's buffers


class _GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose ``keys``/``values`` are views of the first columns of zero-filled buffers.

    ``update`` returns the whole buffers, so attention sees contiguous tensors of ``capacity``
    columns and must mask the spare ones (``DecodeBatch.step`` does). ``DecodeBatch`` may replace
    ``keys``/``values`` with new tensors (join, leave, trim); the next ``reserve`` sees that ``keys``
    is no longer its own view and copies them into fresh buffers once.
    """

    @classmethod
    def adopt(cls, layer: DynamicLayer) -> "_GrowingLayer":
        grown = cls()
        grown.__dict__.update(layer.__dict__)
        grown._key_buffer = grown._value_buffer = grown._view = None
        return grown

    @property
    def capacity(self) -> int:
        return self._key_buffer.shape[-2]

    def reserve(self, columns: int) -> None:
        """Own buffers with room for ``columns`` columns (reallocated with spare ones when short)."""
        if self._view is not self.keys or columns > self.capacity:
            self._reallocate(columns + _SPARE_COLUMNS)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        width, new = self.keys.shape[-2], key_states.shape[-2]
        self.reserve(width + new)
        self._key_buffer[..., width:width + new, :] = key_states
        self._value_buffer[..., width:width + new, :] = value_states
        self.keys = self._view = self._key_buffer[..., :width + new, :]
        self.values = self._value_buffer[..., :width + new, :]
        return self._key_buffer, self._value_buffer

    def _reallocate(self, capacity: int) -> None:
        width = self.keys.shape[-2]
        # Zeros, not uninitialised memory: attention multiplies the spare columns' values by 0.
        self._key_buffer = self.keys.new_zeros((*self.keys.shape[:-2], capacity, self.keys.shape[-1]))
        self._value_buffer = self.values.new_zeros((*self.values.shape[:-2], capacity, self.values.shape[-1]))
        self._key_buffer[..., :width, :] = self.keys
        self._value_buffer[..., :width, :] = self.values
        self.keys = self._view = self._key_buffer[..., :width, :]
        self.values = self._value_buffer[..., :width, :]


class DecodeBatch:
    """Running rows: one batched ``DynamicCache`` plus each row's real length in it."""

    def __init__(self, model):
        self.model = model
        self.cache_keyword = cache_keyword(model)
        self.cache: DynamicCache | None = None
        self.lengths: list[int] = []  # real (non-padding) tokens of each row in the cache

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def width(self) -> int:
        return self.cache.get_seq_length() if self.cache is not None else 0

    def add(self, cache: DynamicCache) -> None:
        """Append a row whose ``cache`` holds its prompt (batch of one, no padding)."""
        length = cache.get_seq_length()
        if self.cache is None:
            cache.layers = [_GrowingLayer.adopt(layer) for layer in cache.layers]
            self.cache, self.lengths = cache, [length]
            return
        width = max(self.width, length)
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([_left_pad(mine.keys, width), _left_pad(theirs.keys, width)])
            mine.values = torch.cat([_left_pad(mine.values, width), _left_pad(theirs.values, width)])
        self.lengths.append(length)

    def step(self, tokens: list[int]) -> torch.Tensor:
        """Feed one token per row; return the next-token logits, [rows, vocab]."""
        device = self.model.device
        lengths = torch.tensor(self.lengths, device=device)
        width = self.width
        for layer in self.cache.layers:
            layer.reserve(width + 1)
        # Per row: its own columns and the new token's (column ``width``); not its left padding, not the
        # spare columns attention also reads. 4-D, so transformers uses it as given.
        columns = torch.arange(self.cache.layers[0].capacity, device=device)[None, :]
        mask = (columns >= (width - lengths)[:, None]) & (columns <= width)
        out = self.model(input_ids=torch.tensor(tokens, device=device)[:, None], attention_mask=mask[:, None, None, :],
                         position_ids=lengths[:, None], use_cache=True, **{self.cache_keyword: self.cache})
        self.lengths = [n + 1 for n in self.lengths]
        return out.logits[:, -1]

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (indices, in order) and trim padding no kept row needs."""
        if not rows:
            self.cache, self.lengths = None, []
            return
        if rows == list(range(len(self.lengths))):
            return  # nobody left: selecting would copy the whole cache (and re-buffer it next step)
        self.cache.batch_select_indices(torch.tensor(rows, device=self.model.device))
        self.lengths = [self.lengths[i] for i in rows]
        trim = self.width - max(self.lengths)
        if trim:
            for layer in self.cache.layers:
                layer.keys = layer.keys[..., trim:, :]
                layer.values = layer.values[..., trim:, :]
