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
from functools import lru_cache
from pathlib import Path
from typing import Callable

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
    settings = _settings(folder)
    if _has_light_tokenizer(folder, settings):
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_truncation()  # a tokenizer.json may carry a max length that transformers lifts
        tokenizer.no_padding()
        return TextTokenizer(lambda text: tokenizer.encode(text, add_special_tokens=False).ids,
                             lambda ids: tokenizer.decode(ids, skip_special_tokens=False))
    fallback = _auto_tokenizer(folder)
    return TextTokenizer(lambda text: fallback(text, add_special_tokens=False)["input_ids"], fallback.decode)


# What transformers passes a chat template besides the messages (its special_tokens_map).
_TEMPLATE_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


def load_chat_token_counter(ref: str, tokenizer: TextTokenizer | None = None) -> Callable[[list[dict]], int]:
    """Tokens of a conversation in the model's chat template: what
    ``AutoTokenizer.apply_chat_template(messages, tokenize=True)`` returns.

    The template is rendered by transformers' own jinja renderer, which
    imports neither torch nor the tokenizer classes (0.6 s instead of 2 s of
    CPU for ``AutoTokenizer``). A model whose template or special tokens are
    stored in another form falls back to ``AutoTokenizer``. ``tokenizer``: the
    model's :func:`load_text_tokenizer`, when the caller has it already.
    """
    folder = Path(resolve_model(ref))
    settings = _settings(folder)
    template_file = folder / "chat_template.jinja"
    template = template_file.read_text() if template_file.exists() else settings.get("chat_template")
    tokens = {name: settings[name] for name in _TEMPLATE_TOKENS if name in settings}
    if _has_light_tokenizer(folder, settings) and isinstance(template, str) and \
            all(isinstance(token, str) for token in tokens.values()):
        from transformers.utils.chat_template_utils import render_jinja_template

        tokenizer = tokenizer or load_text_tokenizer(ref)
        return lambda messages: tokenizer.count(render_jinja_template([messages], chat_template=template,
                                                                      **tokens)[0][0])
    fallback = _auto_tokenizer(folder)

    def count(messages: list[dict]) -> int:
        encoded = fallback.apply_chat_template(messages, tokenize=True)
        return len(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)

    return count


@lru_cache(maxsize=4)
def _auto_tokenizer(folder: Path):
    """transformers' tokenizer of ``folder``, loaded once per process (both fallbacks may need it)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, trust_remote_code=False)


def _settings(folder: Path) -> dict:
    settings_file = folder / "tokenizer_config.json"
    return json.loads(settings_file.read_text()) if settings_file.exists() else {}


def _has_light_tokenizer(folder: Path, settings: dict) -> bool:
    return (folder / "tokenizer.json").exists() and not settings.get("clean_up_tokenization_spaces")
