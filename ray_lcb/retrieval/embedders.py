"""Text embedders: documents and queries to L2-normalised float32 vectors.

Two kinds, chosen by ``EmbedderConfig.kind`` in :func:`build_embedder` (the one
place that maps a kind to a class):

* ``mean_pooling`` -- a sentence-transformers folder (default: the bundled
  all-MiniLM-L6-v2) run with plain ``transformers.AutoModel``: mean of the
  token states over the attention mask, then L2 normalisation.
* ``last_token`` -- an E5-mistral style decoder: EOS appended, the state of
  the last real token, queries prefixed ``Instruct: {task}\\nQuery: {q}``.

Documents longer than one window are truncated or embedded as the token-weighted
mean of their windows (``EmbedderConfig.long_documents``). Called by the
embedding actors of ``index_job`` and by ``Retriever`` for queries.

Shapes: N texts, P passages, T tokens, D embedding dim.
"""

from __future__ import annotations

import json
import logging
from typing import Sequence

import numpy as np
import torch

from ray_lcb.models import resolve_model
from ray_lcb.retrieval.config import E5_DEFAULT_TASK, EmbedderConfig

# E5-mistral was fine-tuned with 4096-token inputs; longer windows only cost memory.
LAST_TOKEN_MAX_WINDOW = 4096


class TextEmbedder:
    """Shared machinery: load the model, batch, pool, split long documents.

    Subclasses set how texts become token ids (:meth:`_tokenize`) and how token
    states become one vector (:meth:`_pool`).
    """

    def __init__(self, config: EmbedderConfig):
        from transformers import AutoModel, AutoTokenizer

        self.config = config
        self.model_path = resolve_model(config.model)
        auto_device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(auto_device if config.device == "auto" else config.device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, trust_remote_code=False)
        # Right padding keeps position ids of real tokens unchanged, so a text's vector does not depend on
        # the longest text of its batch (HF decoders number positions from 0 whatever the padding).
        self.tokenizer.padding_side = "right"
        self.model = AutoModel.from_pretrained(
            self.model_path, dtype=getattr(torch, config.dtype), trust_remote_code=False, use_safetensors=True,
        ).to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)
        self.max_length = window_length(config)
        max_positions = getattr(self.model.config, "max_position_embeddings", None)
        if max_positions is not None and self.max_length > max_positions:
            raise ValueError(f"embedder.max_length={self.max_length} exceeds the {max_positions} positions of "
                             f"'{config.model}'; lower embedder.max_length or leave it None")

    # -- what subclasses define -------------------------------------------------------------------

    def _num_added_tokens(self) -> int:
        """Special tokens added around a text's own tokens (they count against max_length)."""
        raise NotImplementedError

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _pool(self, hidden_NTD: torch.Tensor, mask_NT: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def format_query(self, query: str) -> str:
        return query

    # -- public API -------------------------------------------------------------------------------

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Embed search queries (with the kind's query prefix), truncated to one window.

        Returns:
            float32 array [N, D].
        """
        return self._embed([self.format_query(q) for q in queries])

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed documents (no prefix); long ones per ``config.long_documents``.

        Returns:
            float32 array [N, D].
        """
        texts = [t if isinstance(t, str) else "" for t in texts]
        if self.config.long_documents == "truncate" or not texts:
            return self._embed(texts)
        passages, owner, weights = self.split_passages(texts)
        passage_vecs_PD = self._embed(passages)
        # Token-weighted mean per document: a short tail window counts for what it holds.
        sums_ND = np.zeros((len(texts), self.dim), dtype=np.float64)
        np.add.at(sums_ND, owner, passage_vecs_PD * weights[:, None])
        means_ND = sums_ND / np.bincount(owner, weights=weights, minlength=len(texts))[:, None]
        return self._maybe_normalize(means_ND).astype(np.float32)

    def split_passages(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Cut each text into windows of at most one embedder window of tokens.

        Windows are cut on token boundaries of the text's own tokenisation and
        returned as character slices, so each passage is real text that the
        normal tokenise path (prefix, special tokens, truncation) can take.

        Returns:
            (passages [P], owner [P] index of the text each passage came from,
            weights [P] token count of each passage). A text that fits in one
            window is one passage, itself; an empty text is one empty passage.
        """
        window = self.max_length - self._num_added_tokens()
        enc = self.tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        passages, owner, weights = [], [], []
        for i, (text, offsets) in enumerate(zip(texts, enc["offset_mapping"])):
            if len(offsets) <= window:
                spans = [(text, max(len(offsets), 1))]
            else:
                starts = range(0, len(offsets), window)[: self.config.max_passages_per_document]
                ends = [min(start + window, len(offsets)) for start in starts]
                spans = [(text[offsets[s][0]: offsets[e - 1][1]], e - s) for s, e in zip(starts, ends)]
            for passage, num_tokens in spans:
                passages.append(passage)
                owner.append(i)
                weights.append(num_tokens)
        return passages, np.asarray(owner, dtype=np.int64), np.asarray(weights, dtype=np.float64)

    # -- internals --------------------------------------------------------------------------------

    @torch.inference_mode()
    def _embed(self, texts: list[str]) -> np.ndarray:
        out_ND = np.empty((len(texts), self.dim), dtype=np.float32)
        # Longest first, in batches of similar length: less padding, and an OOM shows up on the first batch.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), self.config.batch_size):
            idx = order[start: start + self.config.batch_size]
            inputs = {k: v.to(self.device) for k, v in self._tokenize([texts[i] for i in idx]).items()}
            hidden_NTD = self.model(**inputs).last_hidden_state
            pooled_ND = self._pool(hidden_NTD.float(), inputs["attention_mask"])
            out_ND[idx] = self._maybe_normalize(pooled_ND.cpu().numpy())
        return out_ND

    def _maybe_normalize(self, vecs_ND: np.ndarray) -> np.ndarray:
        if not self.config.normalize:
            return vecs_ND
        return vecs_ND / np.maximum(np.linalg.norm(vecs_ND, axis=1, keepdims=True), 1e-12)


class MeanPoolingEmbedder(TextEmbedder):
    """sentence-transformers style encoder: masked mean of token states (e.g. all-MiniLM-L6-v2)."""

    def __init__(self, config: EmbedderConfig):
        super().__init__(config)
        pooling_file = self.model_path / "1_Pooling" / "config.json"
        if pooling_file.exists():
            pooling = json.loads(pooling_file.read_text())
            other = [k for k, v in pooling.items()
                     if k.startswith("pooling_mode_") and v and k != "pooling_mode_mean_tokens"]
            if not pooling.get("pooling_mode_mean_tokens") or other:
                raise ValueError(
                    f"embedder.kind='mean_pooling' but '{pooling_file}' asks for {other or 'no mean pooling'}; "
                    f"use a model trained with mean pooling or another embedder.kind")
        else:
            logging.getLogger(__name__).warning(
                "'%s' has no 1_Pooling/config.json; assuming mean pooling", self.model_path)

    def _num_added_tokens(self) -> int:
        return self.tokenizer.num_special_tokens_to_add(pair=False)

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return dict(self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt"))

    def _pool(self, hidden_NTD: torch.Tensor, mask_NT: torch.Tensor) -> torch.Tensor:
        mask_NT1 = mask_NT.unsqueeze(-1).to(hidden_NTD.dtype)
        return (hidden_NTD * mask_NT1).sum(1) / mask_NT1.sum(1).clamp(min=1e-9)


class LastTokenEmbedder(TextEmbedder):
    """E5-mistral style decoder: EOS appended, vector = state of the last real token."""

    def __init__(self, config: EmbedderConfig):
        super().__init__(config)
        if self.tokenizer.eos_token_id is None:
            raise ValueError(f"embedder.kind='last_token' needs an EOS token, and the tokenizer of "
                             f"'{config.model}' has none; use a decoder model such as intfloat/e5-mistral-7b-instruct")
        if self.tokenizer.pad_token_id is None:
            # Padding sits after the last real token and is masked, so its id does not matter.
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.task = config.query_instruction or E5_DEFAULT_TASK

    def _num_added_tokens(self) -> int:
        return self.tokenizer.num_special_tokens_to_add(pair=False) + 1  # + the appended EOS

    def format_query(self, query: str) -> str:
        return f"Instruct: {self.task}\nQuery: {query}"

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        # As in E5-mistral's reference code: truncate one short of the window, then append EOS.
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length - 1, padding=False,
                             return_attention_mask=False)
        ids = [list(x) + [self.tokenizer.eos_token_id] for x in enc["input_ids"]]
        return dict(self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt"))

    def _pool(self, hidden_NTD: torch.Tensor, mask_NT: torch.Tensor) -> torch.Tensor:
        # Index of the last 1 in each mask row, whichever side the padding is on.
        last_N = mask_NT.shape[1] - 1 - mask_NT.flip(1).argmax(1)
        return hidden_NTD[torch.arange(hidden_NTD.shape[0], device=hidden_NTD.device), last_N]


def window_length(config: EmbedderConfig) -> int:
    """Tokens per embedder window (special tokens included), from config files only (no weights loaded).

    ``config.max_length`` if set; else sentence_bert_config.json's max_seq_length;
    else the model's max positions, capped by the tokenizer's model_max_length
    (mean_pooling) or by 4096 (last_token).
    """
    if config.max_length is not None:
        return config.max_length
    folder = resolve_model(config.model)
    sbert_file = folder / "sentence_bert_config.json"
    if config.kind == "mean_pooling" and sbert_file.exists():
        return int(json.loads(sbert_file.read_text())["max_seq_length"])
    max_positions = int(json.loads((folder / "config.json").read_text()).get("max_position_embeddings", 512))
    if config.kind == "last_token":
        return min(max_positions, LAST_TOKEN_MAX_WINDOW)
    tokenizer_file = folder / "tokenizer_config.json"
    tokenizer_max = json.loads(tokenizer_file.read_text()).get("model_max_length") if tokenizer_file.exists() else None
    return min(max_positions, int(tokenizer_max)) if isinstance(tokenizer_max, (int, float)) else max_positions


EMBEDDERS: dict[str, type[TextEmbedder]] = {"mean_pooling": MeanPoolingEmbedder, "last_token": LastTokenEmbedder}


def build_embedder(config: EmbedderConfig) -> TextEmbedder:
    """The embedder class for ``config.kind``, loaded on ``config.device``."""
    return EMBEDDERS[config.kind](config)
