"""Continuous batching: one worker thread decodes every running request together, step by step.

Static batches wait for their longest row, and a request that arrives just
after a batch started waits for the whole batch (measured in synthesis: no
speed-up over one request at a time, 10-40 s waits). Here, before every
decode step the worker admits waiting requests (prefilled one by one, so no
prompt is padded to another's length for its prefill) into the running
:class:`~ray_lcb.serving.engines.decode_batch.DecodeBatch`, runs one forward
for all rows, and retires each row as soon as it stops (EOS, its own
``max_tokens``, one of its stop strings), resolving its future.

The worker owns the model and tokenizer: callers only touch the queue and
their futures, so ``submit`` is safe from any thread or event loop.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

import torch
from transformers.cache_utils import DynamicCache

from ray_lcb.serving.engines.decode_batch import DecodeBatch, check_full_attention
from ray_lcb.serving.engines.sampling import row_generator, sample
from ray_lcb.serving.protocol import GenerationRequest, GenerationResult


@dataclass
class _Row:
    request: GenerationRequest
    future: Future
    prompt_tokens: int
    generator: torch.Generator | None
    tokens: list[int] = field(default_factory=list)  # generated so far
    error: Exception | None = None  # set when its sampling or stop check failed


class ContinuousBatcher:
    """Serves submitted requests from one background thread that owns ``model``.

    Args:
        model: a transformers causal LM with a full-attention KV cache.
        tokenizer: its tokenizer (used to look for stop strings).
        encode: request -> prompt token ids; raises ValueError for a request
            the engine cannot serve (that request fails alone).
        finish: (generated ids, request, prompt tokens) -> GenerationResult.
        eos_ids: token ids that end a row.
        max_batch_size: most rows decoded together.
    """

    def __init__(self, model, tokenizer, *, encode: Callable[[GenerationRequest], list[int]],
                 finish: Callable[[list[int], GenerationRequest, int], GenerationResult],
                 eos_ids: list[int], max_batch_size: int):
        check_full_attention(model.config)
        self._model, self._tokenizer = model, tokenizer
        self._encode, self._finish = encode, finish
        self._eos_ids = set(eos_ids)
        self.max_batch_size = max_batch_size
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._batch = DecodeBatch(model)
        self._rows: list[_Row] = []
        self._lock = threading.Lock()  # guards _closed against submit, and the stats against readers
        self._closed = False
        self._admissions: list[dict] = []
        self._step_rows: Counter = Counter()
        self._decode_seconds = 0.0
        self._thread = threading.Thread(target=self._loop, name="continuous-batcher", daemon=True)
        self._thread.start()

    def submit(self, request: GenerationRequest) -> Future:
        """Queue ``request``; the future resolves to its GenerationResult or raises its error."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the engine is closed")
            self._queue.put((request, future))
        return future

    def close(self) -> None:
        """Stop the worker; requests not finished yet fail with RuntimeError."""
        with self._lock:
            self._closed = True
            self._queue.put(None)  # wakes a worker blocked on an empty queue
        self._thread.join()

    def stats(self) -> dict:
        """``admissions``: per admission round, ``size`` (rows in the decode batch right after it),
        ``admitted`` (requests prefilled), ``prompt_tokens`` and prefill ``seconds``;
        ``decode_steps``: number of decode steps by rows decoded together; ``decode_seconds``: their time."""
        with self._lock:
            return {"admissions": list(self._admissions), "decode_steps": dict(self._step_rows),
                    "decode_seconds": round(self._decode_seconds, 3)}

    @torch.inference_mode()
    def _loop(self) -> None:
        while not self._closed:
            self._admit(self._take(block=not self._rows))
            if self._rows:
                self._decode()
        error = RuntimeError("the engine was closed before this request finished")
        self._fail_rows(error)
        while not self._queue.empty():
            item = self._queue.get()
            if item is not None and item[1].set_running_or_notify_cancel():
                item[1].set_exception(error)

    def _take(self, *, block: bool) -> list[tuple[GenerationRequest, Future]]:
        """Waiting requests up to the free rows (waits for one when nothing runs)."""
        taken = []
        while len(self._rows) + len(taken) < self.max_batch_size:
            try:
                item = self._queue.get(block=block and not taken)
            except queue.Empty:
                break
            if item is None:  # close() was called
                break
            taken.append(item)
        return taken

    def _admit(self, waiting: list[tuple[GenerationRequest, Future]]) -> None:
        started, admitted, prompt_tokens = time.perf_counter(), 0, 0
        for request, future in waiting:
            if not future.set_running_or_notify_cancel():
                continue  # the caller gave up while it waited
            try:
                row, cache, logits = self._prefill(request, future)
            except Exception as err:  # noqa: BLE001 - a request that cannot run fails alone
                future.set_exception(err)
                continue
            admitted, prompt_tokens = admitted + 1, prompt_tokens + row.prompt_tokens
            if self._advance(row, logits):
                self._resolve(row)
            else:
                self._rows.append(row)
                try:
                    self._batch.add(cache)
                except Exception as err:  # noqa: BLE001 - e.g. out of memory: the half-merged cache is lost
                    self._fail_rows(err)
        if admitted:
            with self._lock:
                self._admissions.append({"size": len(self._rows), "admitted": admitted, "prompt_tokens": prompt_tokens,
                                         "seconds": round(time.perf_counter() - started, 3)})

    def _prefill(self, request: GenerationRequest, future: Future) -> tuple[_Row, DynamicCache, torch.Tensor]:
        """Run the prompt alone; return the row, its cache and its first next-token logits."""
        prompt = self._encode(request)
        device = self._model.device
        cache = DynamicCache(config=self._model.config)
        logits = self._model(input_ids=torch.tensor([prompt], device=device), use_cache=True, logits_to_keep=1,
                             **{self._batch.cache_keyword: cache}).logits[0, -1]
        return _Row(request, future, len(prompt), row_generator(request.params, device)), cache, logits

    def _decode(self) -> None:
        """One token for every running row; retire the rows that stopped."""
        rows, started = self._rows, time.perf_counter()
        try:
            logits = self._batch.step([row.tokens[-1] for row in rows])
            stopped = [self._advance(row, row_logits) for row, row_logits in zip(rows, logits)]
            self._batch.keep([i for i, done in enumerate(stopped) if not done])
        except Exception as err:  # noqa: BLE001 - the failed step's rows fail; the worker keeps serving
            self._fail_rows(err)
            return
        with self._lock:
            self._step_rows[len(rows)] += 1
            self._decode_seconds += time.perf_counter() - started
        self._rows = [row for row, done in zip(rows, stopped) if not done]
        for row, done in zip(rows, stopped):
            if done:
                self._resolve(row)

    def _advance(self, row: _Row, logits: torch.Tensor) -> bool:
        """Append the row's next token; True when the row is done (stopped, or failed alone)."""
        try:
            row.tokens.append(sample(logits, row.request.params, row.generator))
            return self._stopped(row)
        except Exception as err:  # noqa: BLE001 - reported to that request's caller
            row.error = err
            return True

    def _stopped(self, row: _Row) -> bool:
        params = row.request.params
        if row.tokens[-1] in self._eos_ids or len(row.tokens) >= params.max_tokens:
            return True
        if not params.stop:
            return False
        # Decode only a short tail: enough tokens to contain the longest stop string.
        tail = self._tokenizer.decode(row.tokens[-(max(map(len, params.stop)) + 4):], skip_special_tokens=True)
        return any(s in tail for s in params.stop)

    def _resolve(self, row: _Row) -> None:
        if row.error is not None:
            row.future.set_exception(row.error)
            return
        try:
            row.future.set_result(self._finish(row.tokens, row.request, row.prompt_tokens))
        except Exception as err:  # noqa: BLE001 - reported to that request's caller
            row.future.set_exception(err)

    def _fail_rows(self, error: Exception) -> None:
        for row in self._rows:
            row.future.set_exception(error)
        self._rows, self._batch = [], DecodeBatch(self._model)
