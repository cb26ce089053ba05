"""Counting, cutting and decoding tokens without importing torch or transformers.

The synthesis stages that call the LLM only measure text in the generator's
tokens and cut it at token boundaries. ``AutoTokenizer`` imports transformers
and torch to do that: 3 s of CPU per actor (measured), and the pipeline
starts its stage actors together, so on 2 cores that import was most of the
~16 s the LLM replica waited for its first request. The model's
``tokenizer.json`` read with the ``tokenizers`` library (what transformers'
fast tokenizers run underneath) gives the same ids and text; a model without
one, or whose decoding transformers post-processes, falls back to
``AutoTokenizer``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ray_lcb.models import resolve_model


class TextTokenizer:
    """``encode``/``count``/``decode`` of one model's tokenizer, no special tokens added."""

    def __init__(self, encode, decode):
        self._encode, self._decode = encode, decode

    def encode(self, text: str) -> list[int]:
        return self._encode(text)

    def count(self, text: str) -> int:
        return len(self._encode(text))

    def decode(self, ids: list[int]) -> str:
        return self._decode(ids)


def load_text_tokenizer(ref: str) -> TextTokenizer:
    folder = Path(resolve_model(ref))
    settings_file = folder / "tokenizer_config.json"
    settings = json.loads(settings_file.read_text()) if settings_file.exists() else {}
    if (folder / "tokenizer.json").exists() and not settings.get("clean_up_tokenization_spaces"):
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_truncation()  # a tokenizer.json may carry a max length that transformers lifts
        tokenizer.no_padding()
        return TextTokenizer(lambda text: tokenizer.encode(text, add_special_tokens=False).ids,
                             lambda ids: tokenizer.decode(ids, skip_special_tokens=False))
    from transformers import AutoTokenizer

    fallback = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    return TextTokenizer(lambda text: fallback(text, add_special_tokens=False)["input_ids"], fallback.decode)
