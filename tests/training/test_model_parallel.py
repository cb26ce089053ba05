"""A tiny Llama under sequence (and data) parallelism equals the single-process model.

Real gloo processes run the training path (ring attention through transformers'
attention registry, zigzag-sharded ids/positions/labels, chunked loss,
gradient all-reduce); each rank also computes the reference in-process with
stock transformers (SDPA attention, full logits, plain cross-entropy) and
returns the differences.
"""

import pytest
import torch
import torch.nn.functional as F

from ray_lcb.training.launch import run_local_group

SEQ_LEN = 48  # divisible by 2 × sp for sp = 2


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=300, hidden_size=96, intermediate_size=160, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=24, max_position_embeddings=64,
                         tie_word_embeddings=True)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    return str(path)


def _samples(num_samples: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input_ids, shifted labels) pairs; sample 0 counts every token, sample 1 only a span."""
    generator = torch.Generator().manual_seed(7)
    samples = []
    for index in range(num_samples):
        ids = torch.randint(0, 300, (1, SEQ_LEN + 1), generator=generator)
        labels = ids[:, 1:].clone()
        if index % 2 == 1:  # 'short' sample: loss only on an "assistant" span, uneven across the ring
            labels[:, :30] = -100
            labels[:, 40:] = -100
        samples.append((ids[:, :-1], labels))
    return samples


def _reference(model_path: str, samples) -> tuple[float, dict[str, torch.Tensor]]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, attn_implementation="sdpa", dtype=torch.float32)
    losses = []
    for input_ids, labels in samples:
        logits = model(input_ids=input_ids).logits
        losses.append(F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100))
    loss = torch.stack(losses).mean()
    loss.backward()
    return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters()}


def _compare(rank: int, world_size: int, model_path: str, sp: int, variants: list[tuple[str, bool]]) -> dict:
    import torch.distributed as dist

    from ray_lcb.training.loss import sequence_parallel_loss
    from ray_lcb.training.model import forward_hidden, load_training_model
    from ray_lcb.training.parallel import average_gradients, build_sequence_parallel_group
    from ray_lcb.training.zigzag import zigzag_shard

    dp = world_size // sp
    dp_rank, sp_rank = divmod(rank, sp)
    group = build_sequence_parallel_group(rank, world_size, sp)
    samples = _samples(2)[:dp] if dp > 1 else _samples(2)[1:]  # one ring: the short sample
    ref_loss, ref_grads = _reference(model_path, samples)
    results = {}
    for dtype, use_checkpointing in variants:
        model = load_training_model(model_path, dtype=dtype, gradient_checkpointing=use_checkpointing)
        input_ids, labels = samples[dp_rank]
        positions = torch.arange(SEQ_LEN).unsqueeze(0)
        ids_l, pos_l, labels_l = (zigzag_shard(t, sp_rank, sp) for t in (input_ids, positions, labels))
        hidden = forward_hidden(model, ids_l, pos_l, group)
        # Chunks of 5 tokens: several chunks, some of them with no counted label.
        share, sample_loss, count = sequence_parallel_loss(hidden, model.get_output_embeddings(), labels_l,
                                                           group, chunk_tokens=5)
        share.backward()
        params = dict(model.named_parameters())
        average_gradients(list(params.values()), dp)
        step_loss = torch.tensor([sample_loss.item()], dtype=torch.float64)
        dist.all_reduce(step_loss)
        results[(dtype, use_checkpointing)] = {
            "loss_error": abs(step_loss.item() / world_size - ref_loss) / ref_loss,
            "count": count.item(),
            "grad_errors": {n: ((p.grad.float() - ref_grads[n]).norm() / ref_grads[n].norm()).item()
                            for n, p in params.items()},
        }
    return results


TOLERANCE = {"float32": (1e-6, 1e-4), "bfloat16": (2e-2, 5e-2)}  # (loss, gradients), relative


def _assert_equal_to_reference(results_per_rank, variants):
    for results in results_per_rank:
        for variant in variants:
            result = results[variant]
            loss_tolerance, grad_tolerance = TOLERANCE[variant[0]]
            assert result["loss_error"] < loss_tolerance, (variant, result["loss_error"])
            worst = max(result["grad_errors"].items(), key=lambda item: item[1])
            assert worst[1] < grad_tolerance, (variant, worst)


def test_sequence_parallel_2_ranks_equals_single_process(tiny_llama):
    variants = [("float32", True), ("float32", False), ("bfloat16", True)]
    results = run_local_group(_compare, 2, tiny_llama, 2, variants, timeout_s=300)
    _assert_equal_to_reference(results, variants)
    assert results[0][("float32", True)]["count"] == 10  # the counted span of the short sample, over the ring


def test_two_rings_of_two_average_gradients_across_data_parallel_groups(tiny_llama):
    variants = [("float32", True)]
    results = run_local_group(_compare, 4, tiny_llama, 2, variants, timeout_s=300)
    _assert_equal_to_reference(results, variants)
    assert {r[variants[0]]["count"] for r in results} == {SEQ_LEN, 10}  # ring 0: long sample, ring 1: short one
