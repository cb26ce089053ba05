"""Loss masking, chunked cross-entropy and chat tokenization (single process, real SmolLM2 tokenizer)."""

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from ray_lcb.training.data import ChatParquetSource, build_example, sample_order, tokenize_chat
from ray_lcb.training.loss import chunked_cross_entropy, sequence_parallel_loss

CHAT = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome, the eternal city."},
]


@pytest.fixture(scope="module")
def tokenizer(smollm2_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_path)


def test_tokenize_chat_marks_exactly_the_assistant_replies(tokenizer):
    ids, mask = tokenize_chat(tokenizer, CHAT)
    assert ids == tokenizer.apply_chat_template(CHAT, tokenize=True)["input_ids"]
    assistant_text = tokenizer.decode([i for i, m in zip(ids, mask) if m])
    assert assistant_text == "Paris.<|im_end|>\nRome, the eternal city.<|im_end|>\n"


def test_tokenize_chat_rejects_malformed_messages(tokenizer):
    with pytest.raises(ValueError, match="role"):
        tokenize_chat(tokenizer, [{"content": "no role"}])
    with pytest.raises(ValueError, match="non-empty"):
        tokenize_chat(tokenizer, [])


def test_build_example_shifts_masks_pads_and_truncates(tokenizer):
    ids, mask = tokenize_chat(tokenizer, CHAT)
    short = build_example(ids, mask, "short", seq_len=4096, multiple=8, pad_id=2)
    total = short.input_ids.shape[1]
    assert total % 8 == 0 and total >= len(ids) - 1 and short.num_tokens == len(ids) - 1
    counted = short.labels[0] != -100
    assert short.labels[0, counted].tolist() == [t for t, m in zip(ids[1:], mask[1:]) if m]
    assert short.position_ids[0].tolist() == list(range(total))
    long = build_example(ids, mask, "long", seq_len=4096, multiple=8, pad_id=2)
    assert long.labels[0, :len(ids) - 1].tolist() == ids[1:]  # every real token counted
    assert (long.labels[0, len(ids) - 1:] == -100).all() and (long.input_ids[0, len(ids) - 1:] == 2).all()
    cut = build_example(ids, mask, "long", seq_len=16, multiple=8, pad_id=2)
    assert cut.truncated and cut.input_ids.shape[1] == 16 and cut.input_ids[0].tolist() == ids[:16]
    assert not long.truncated
    with pytest.raises(ValueError, match="kind"):
        build_example(ids, mask, "medium", seq_len=16, multiple=8, pad_id=2)


def test_short_loss_ignores_non_assistant_tokens_and_long_loss_counts_all(tokenizer):
    ids, mask = tokenize_chat(tokenizer, CHAT)
    torch.manual_seed(0)
    lm_head = torch.nn.Linear(16, len(tokenizer), bias=False)
    short = build_example(ids, mask, "short", seq_len=4096, multiple=4, pad_id=2)
    long = build_example(ids, mask, "long", seq_len=4096, multiple=4, pad_id=2)
    hidden = torch.randn(1, short.input_ids.shape[1], 16)
    logits = lm_head(hidden)[0, :len(ids) - 1]
    per_token = F.cross_entropy(logits, torch.tensor(ids[1:]), reduction="none")
    assistant = torch.tensor(mask[1:])

    short_loss, _, short_count = sequence_parallel_loss(hidden, lm_head, short.labels, None, chunk_tokens=7)
    long_loss, _, long_count = sequence_parallel_loss(hidden, lm_head, long.labels, None, chunk_tokens=7)
    assert short_count.item() == assistant.sum().item() and long_count.item() == len(ids) - 1
    assert torch.allclose(short_loss, per_token[assistant].mean(), atol=1e-5)
    assert torch.allclose(long_loss, per_token.mean(), atol=1e-5)
    # Changing the model's output at a user-turn position moves the long loss, not the short one.
    user_position = int((~assistant).nonzero()[5])
    perturbed = hidden.clone()
    perturbed[0, user_position] += 3.0
    assert torch.allclose(sequence_parallel_loss(perturbed, lm_head, short.labels, None, 7)[0], short_loss)
    assert not torch.allclose(sequence_parallel_loss(perturbed, lm_head, long.labels, None, 7)[0], long_loss)


@pytest.mark.parametrize("chunk_tokens", [1, 7, 64, 10_000])
def test_chunked_cross_entropy_equals_plain_cross_entropy(chunk_tokens):
    torch.manual_seed(0)
    hidden = torch.randn(2, 30, 12, requires_grad=True)
    lm_head = torch.nn.Linear(12, 500)
    labels = torch.randint(0, 500, (2, 30))
    labels[0, :9] = -100
    loss_sum, count = chunked_cross_entropy(hidden, lm_head, labels, chunk_tokens)
    loss_sum.backward()
    grads = hidden.grad.clone(), lm_head.weight.grad.clone(), lm_head.bias.grad.clone()
    hidden.grad = None
    lm_head.zero_grad()
    expected = F.cross_entropy(lm_head(hidden).view(-1, 500), labels.view(-1), ignore_index=-100, reduction="sum")
    expected.backward()
    assert count.item() == 51
    assert torch.allclose(loss_sum, expected, rtol=1e-5)
    for got, want in zip(grads, (hidden.grad, lm_head.weight.grad, lm_head.bias.grad)):
        assert torch.allclose(got, want, atol=1e-5)


def test_all_ignored_labels_still_reach_the_model_graph():
    """A rank with nothing to count must still run backward (it carries other ranks' dK/dV)."""
    hidden = torch.randn(1, 8, 4, requires_grad=True)
    loss_sum, count = chunked_cross_entropy(hidden, torch.nn.Linear(4, 10), torch.full((1, 8), -100), 4)
    assert count.item() == 0 and loss_sum.item() == 0.0
    loss_sum.backward()
    assert hidden.grad is not None and hidden.grad.abs().sum() == 0


def test_sample_order_is_seeded_and_covers_each_epoch():
    first = sample_order(5, 12, seed=3, stage_index=1)
    assert first.tolist() == sample_order(5, 12, seed=3, stage_index=1).tolist()
    assert sorted(first[:5].tolist()) == list(range(5)) and sorted(first[5:10].tolist()) == list(range(5))
    assert first.tolist() != sample_order(5, 12, seed=3, stage_index=2).tolist()


def test_parquet_source_reads_messages_and_validates(tmp_path):
    pd.DataFrame({"messages": [CHAT, CHAT[:3]], "kind": ["short", "long"]}).to_parquet(tmp_path / "a.parquet")
    pd.DataFrame({"messages": [CHAT[:3]]}).to_parquet(tmp_path / "b.parquet")  # no kind column
    source = ChatParquetSource(tmp_path)
    assert len(source) == 3
    assert source[0] == (CHAT, "short") and source[2] == (CHAT[:3], None)

    with pytest.raises(ValueError, match="no .parquet files"):
        ChatParquetSource(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    pd.DataFrame({"text": ["x"]}).to_parquet(bad / "c.parquet")
    with pytest.raises(ValueError, match="no 'messages' column"):
        ChatParquetSource(bad)
    wrong_kind = tmp_path / "kind"
    wrong_kind.mkdir()
    pd.DataFrame({"messages": [CHAT], "kind": ["medium"]}).to_parquet(wrong_kind / "d.parquet")
    with pytest.raises(ValueError, match="'kind' has values"):
        ChatParquetSource(wrong_kind)
