"""Masked attention's masks: the NumPy paths give torch's own answers (float32 and bf16, inference tensors)."""

from __future__ import annotations

import pytest
import torch

from seem.modeling.cross_attention_mask import negative_logits, outside_masks, unblock_empty_rows


def test_negative_logits_is_the_sign_test_of_each_cell_and_agrees_with_the_official_sigmoid_test():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 6, 7, generator=g)
    logits[0, 0] = 0.0  # logit 0: sigmoid 0.5, not blocked by either test
    for x in (logits, logits.bfloat16()):
        want = x.flatten(2) < 0
        assert torch.equal(negative_logits(x), want)
        with torch.inference_mode():
            assert torch.equal(negative_logits(x.clone()), want)
    assert torch.equal(negative_logits(logits), outside_masks(logits, (6, 7)))


def test_rows_blocked_everywhere_are_opened_in_place_and_the_others_kept():
    mask = torch.zeros(2, 4, 9, dtype=torch.bool)
    mask[0, 1] = True  # blocked everywhere
    mask[1, 2, :8] = True  # one cell open
    want = mask.clone()
    want[0, 1] = False
    out = unblock_empty_rows(mask)
    assert out is mask and torch.equal(mask, want)
    with torch.inference_mode():
        frozen = torch.ones(1, 2, 3, dtype=torch.bool)
        assert not unblock_empty_rows(frozen).any()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.trace
def test_traced_masks_keep_torch_operations():
    """Under tracing the comparisons stay in the graph (a NumPy result would be baked in as a constant)."""
    traced = torch.jit.trace(lambda x: unblock_empty_rows(negative_logits(x)), torch.randn(1, 2, 3, 4))
    x = -torch.rand(1, 2, 3, 4) - 0.1  # every cell negative: every row opened
    x[0, 0, 0, 0] = 1.0
    want = torch.ones(1, 2, 12, dtype=torch.bool)
    want[0, 0, 0] = False
    want[0, 1] = False
    assert torch.equal(traced(x), want)


def test_torch_func_grad_runs_through_a_prompt_round_with_memory():
    """The decoder's NumPy shortcuts (masks, content-keyed self-attention masks) step aside under torch.func:
    its gradient equals autograd's."""
    from dataclasses import replace

    from seem import from_pretrained
    from seem.modeling.visual_sampler import RandomSampler

    model = from_pretrained().eval()
    image = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        feats = model.encode_image((image - model.pixel_mean) / model.pixel_std)
    h, w = feats.padded_size
    regions = torch.zeros(2, h, w, dtype=torch.bool)
    regions[0, 10:30, 10:30] = True
    regions[1, 50:80, 40:90] = True
    visual = model.encode_visual_prompt(feats, regions, torch.zeros_like(regions), RandomSampler(0))
    memory = torch.randn(1, 2, h // 4, w // 4, generator=torch.Generator().manual_seed(1))

    def embeddings(mask_features):
        f = replace(feats, mask_features=mask_features, cache=None, packs={})
        out = model.decode(f, visual=visual, memory_mask=memory, sampler=RandomSampler(0), intermediate=False,
                           object_queries=False, final_masks=True)
        return out.last.masks.square().mean()

    x = feats.mask_features.detach().clone().requires_grad_(True)
    embeddings(x).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    torch.testing.assert_close(torch.func.grad(embeddings)(feats.mask_features.detach().clone()), x.grad)
