"""Token-bounded chunking of retrieved documents (pure logic, no Ray)."""

from __future__ import annotations

from ray_lcb.text_tokenizer import TextTokenizer


def document_block(index: int, text: str) -> str:
    """How one retrieved document appears in prompts and in the training input."""
    return f"Document {index}:\n{text}"


def split_tokens(token_ids: list[int], max_tokens: int) -> list[list[int]]:
    return [token_ids[i:i + max_tokens] for i in range(0, len(token_ids), max_tokens)] or [[]]


def chunk_documents(texts: list[str], tokenizer: TextTokenizer, max_tokens: int) -> list[str]:
    """Pack documents, in order, into chunks of at most ``max_tokens`` tokens.

    Whole documents are packed together while they fit; a document longer than
    ``max_tokens`` is cut into token windows of its own.
    """
    chunks: list[str] = []
    current: list[str] = []
    current_tokens = 0
    for index, text in enumerate(texts, start=1):
        block = document_block(index, text)
        ids = tokenizer.encode(block)
        if len(ids) > max_tokens:
            if current:
                chunks.append("\n\n".join(current))
                current, current_tokens = [], 0
            chunks.extend(tokenizer.decode(piece) for piece in split_tokens(ids, max_tokens))
            continue
        if current and current_tokens + len(ids) + 2 > max_tokens:
            chunks.append("\n\n".join(current))
            current, current_tokens = [], 0
        current.append(block)
        current_tokens += len(ids) + 2
    if current:
        chunks.append("\n\n".join(current))
    return chunks


def group_texts(texts: list[str], token_counts: list[int], max_tokens: int) -> list[list[str]]:
    """Consecutive groups of texts whose token counts add up to at most ``max_tokens``
    (a single over-long text forms its own group)."""
    groups: list[list[str]] = []
    current: list[str] = []
    size = 0
    for text, count in zip(texts, token_counts):
        if current and size + count > max_tokens:
            groups.append(current)
            current, size = [], 0
        current.append(text)
        size += count
    if current:
        groups.append(current)
    return groups
