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
