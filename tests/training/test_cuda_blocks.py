"""The ring's CUDA block kernels (PyTorch's fused flash / memory-efficient ops) on a real GPU.

The ring's correctness rests on two block properties, checked here against
SDPA on the whole sequence (float64 reference):
* merging the (out, lse) of key blocks gives full attention;
* per-block backward with the *global* out/lse gives gradients that add up
  over blocks to the full gradients.
The multi-rank ring itself is covered on gloo in test_ring_attention.py.
"""

import importlib

import pytest
import torch
import torch.nn.functional as F

from ray_lcb.training import cuda_blocks
from test_ring_attention import assert_block_kernel_matches_math

ring_module = importlib.import_module("ray_lcb.training.ring_attention")

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

# name: (batch, seq, heads, kv_heads, head_dim, dtype)
CASES = {
    "fp32_gqa_d64": (2, 256, 6, 2, 64, torch.float32),
    "fp32_mha_d40": (1, 192, 4, 4, 40, torch.float32),
    "bf16_gqa_d64": (2, 256, 9, 3, 64, torch.bfloat16),
    "bf16_gqa_d128": (1, 512, 8, 2, 128, torch.bfloat16),
}
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2}


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.double() - expected.double()).norm() / expected.double().norm()).item()


@pytest.mark.parametrize("name", CASES)
def test_blocks_merge_and_backward_equal_full_attention(name):
    batch, seq, heads, kv_heads, head_dim, dtype = CASES[name]
    generator = torch.Generator().manual_seed(0)
    q, dout = (torch.randn(batch, seq, heads, head_dim, generator=generator).to(dtype).cuda() for _ in range(2))
    k, v = (torch.randn(batch, seq, kv_heads, head_dim, generator=generator).to(dtype).cuda() for _ in range(2))
    assert cuda_blocks.supports(q)
    ref = [t.double().requires_grad_() for t in (q, k, v)]
    expected = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in ref), is_causal=True,
                                              enable_gqa=True).transpose(1, 2)
    # Gradients from the second half's query rows only, the rows the blocks below compute.
    expected[:, seq // 2:].backward(dout[:, seq // 2:].double())

    # Query rows of the second half see the first half's keys in full and their own causally.
    scale, half = head_dim ** -0.5, seq // 2
    q2 = q[:, half:]
    out, lse = ring_module.merge_block(None, None, *ring_module.block_forward(q2, k[:, :half], v[:, :half],
                                                                              False, scale))
    out, lse = ring_module.merge_block(out, lse, *ring_module.block_forward(q2, k[:, half:], v[:, half:],
                                                                            True, scale))
    assert _relative_error(out, expected[:, half:]) < TOLERANCE[dtype]

    lse_kernel = lse.squeeze(-1).transpose(1, 2).contiguous()
    out = out.to(dtype)
    dq_a, dk_a, dv_a = ring_module.block_backward(dout[:, half:], q2, k[:, :half], v[:, :half], out, lse_kernel,
                                                  False, scale)
    dq_b, dk_b, dv_b = ring_module.block_backward(dout[:, half:], q2, k[:, half:], v[:, half:], out, lse_kernel,
                                                  True, scale)
    assert _relative_error(dq_a.float() + dq_b.float(), ref[0].grad[:, half:]) < TOLERANCE[dtype]
    dk = torch.cat([dk_a.float(), dk_b.float()], dim=1)
    dv = torch.cat([dv_a.float(), dv_b.float()], dim=1)
    assert _relative_error(dk, ref[1].grad) < TOLERANCE[dtype]
    assert _relative_error(dv, ref[2].grad) < TOLERANCE[dtype]


def test_fused_kernels_agree_with_the_math_path():
    generator = torch.Generator().manual_seed(1)
    q, dout = (torch.randn(1, 128, 6, 64, generator=generator).cuda() for _ in range(2))
    k, v = (torch.randn(1, 128, 2, 64, generator=generator).cuda() for _ in range(2))
    assert cuda_blocks.supports(q)  # so block_forward/backward dispatch to the fused CUDA kernels
    assert_block_kernel_matches_math(q, k, v, dout, True, 0.125, grad_atol=1e-4)
