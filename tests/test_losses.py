"""Point-sampled losses (hand-computed values) and the SEEM criterion (perfect vs random, edge cases,
gradients, a small overfit)."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F

from seem.modeling.decoder import DecoderOutput, HeadOutput, QueryGroup, VisualPromptTokens
from seem.train.criterion import ImageTargets, LossWeights, SeemCriterion
from seem.train.point_losses import (
    batch_dice_cost,
    batch_sigmoid_ce_cost,
    dice_loss,
    point_sample,
    sigmoid_ce_loss,
    uncertain_point_coords,
)

# ---------------------------------------------------------------------------------------------- point losses


def test_point_sample_picks_pixel_centres_and_interpolates():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # (1, 1, 2, 2)
    coords = torch.tensor([[[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.5, 0.5]]])  # (x, y)
    assert point_sample(x, coords)[0, 0].tolist() == pytest.approx([1.0, 2.0, 3.0, 2.5])


def test_point_sample_is_resolution_independent_for_block_masks():
    # the same mask at 4x4 and (nearest-upsampled) 16x16 agrees at points away from block edges
    low = (torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    high = low.repeat_interleave(4, -1).repeat_interleave(4, -2)
    centres = (torch.arange(4) + 0.5) / 4
    coords = torch.stack(torch.meshgrid(centres, centres, indexing="xy"), -1).view(1, -1, 2)
    assert torch.equal(point_sample(low, coords), point_sample(high, coords))
    assert torch.equal(point_sample(low, coords)[0, 0], low.flatten())


def test_sigmoid_ce_and_dice_match_formulas():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 3.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    def sp(v):
        return math.log1p(math.exp(v))
    bce = ((sp(-0.0) + sp(2.0)) / 2 + (sp(-1.0) + sp(-3.0)) / 2) / 4.0
    assert sigmoid_ce_loss(logits, targets, 4.0).item() == pytest.approx(bce, rel=1e-6)
    def s(v):
        return 1 / (1 + math.exp(-v))
    d0 = 1 - (2 * s(0.0) + 1) / (s(0.0) + s(2.0) + 1 + 1)
    d1 = 1 - (2 * s(3.0) + 1) / (s(-1.0) + s(3.0) + 1 + 1)
    assert dice_loss(logits, targets, 2.0).item() == pytest.approx((d0 + d1) / 2, rel=1e-6)
    # all-zero logits vs a half mask: p = 0.5 -> 1 - (2*0.5 + 1) / (1 + 1 + 1) = 1/3
    assert dice_loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), 1.0).item() == pytest.approx(1 / 3)


def test_batch_costs_are_pairwise_losses():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, generator=g)
    targets = (torch.rand(2, 7, generator=g) > 0.5).float()
    ce, dice = batch_sigmoid_ce_cost(logits, targets), batch_dice_cost(logits, targets)
    assert ce.shape == dice.shape == (3, 2)
    for q in range(3):
        for n in range(2):
            assert ce[q, n].item() == pytest.approx(sigmoid_ce_loss(logits[q : q + 1], targets[n : n + 1], 1).item(), rel=1e-5)
            assert dice[q, n].item() == pytest.approx(dice_loss(logits[q : q + 1], targets[n : n + 1], 1).item(), rel=1e-5)


def test_uncertain_points_prefer_the_decision_boundary_and_are_deterministic():
    ramp = ((torch.arange(64) + 0.5) / 64 - 0.5) * 40  # logit 0 at x = 0.5
    logits = ramp.expand(1, 1, 64, 64).clone()  # zero padding makes the outer half-pixel uncertain too
    coords = uncertain_point_coords(logits, 300, 3.0, 1.0, torch.Generator().manual_seed(0))
    assert coords.shape == (1, 300, 2) and bool(((coords >= 0) & (coords <= 1)).all())
    near = ((coords[0, :, 0] - 0.5).abs() < 0.2).float().mean()
    assert near > 0.9  # uniform sampling would give 0.4
    mixed = uncertain_point_coords(logits, 300, 3.0, 0.75, torch.Generator().manual_seed(1))
    again = uncertain_point_coords(logits, 300, 3.0, 0.75, torch.Generator().manual_seed(1))
    assert torch.equal(mixed, again)
    assert ((mixed[0, :225, 0] - 0.5).abs() < 0.2).float().mean() > 0.9


# ---------------------------------------------------------------------------------------------- criterion


needs_scipy = pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="matching needs SciPy")

Q, C, D, K, PER_OBJ, S, LAYERS = 5, 3, 8, 2, 2, 2, 2  # object/grounding queries, classes, dims, objects, ...
NS = K * PER_OBJ
NQ = 2 * Q + NS
H = W = 32  # ground truth at the padded input resolution, 4x the 8x8 logits
RANGES = {QueryGroup.OBJECT: (0, Q), QueryGroup.GROUNDING: (Q, 2 * Q), QueryGroup.SPATIAL: (2 * Q, NQ)}


def _class_logits(embed: torch.Tensor) -> torch.Tensor:
    """Stand-in for ``Seem.class_logits``: the first C+1 dims of the embedding are the logits."""
    return embed[..., : C + 1]


def _block(r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
    m = torch.zeros(H, W, dtype=torch.bool)
    m[r0:r1, c0:c1] = True
    return m


def _targets(prompts: bool = True) -> ImageTargets:
    masks = torch.stack([_block(0, 16, 0, 16), _block(16, 32, 8, 32)])
    grounding = torch.stack([_block(0, 32, 0, 8), _block(0, 8, 8, 32)])
    return ImageTargets(
        labels=torch.tensor([0, 2]),
        masks=masks,
        spatial_masks=masks.flip(0) if prompts else None,
        grounding_masks=grounding if prompts else None,
        sentence_embeddings=torch.eye(S, D) * 2 if prompts else None,
    )


def _output(class_embed, mask_embed, masks, positive_mean, visual=True, text=True) -> DecoderOutput:
    """``LAYERS + 1`` prediction sets from free tensors ``(L+1, NQ, ...)``; drop prompt groups at will."""
    preds = [HeadOutput(class_embed[i][None], mask_embed[i][None], masks[i][None]) for i in range(class_embed.shape[0])]
    vis = VisualPromptTokens([], [], [], positive_mean[None], -torch.ones_like(positive_mean)[None]) if visual else None
    ranges = {k: v for k, v in RANGES.items() if (visual or k != QueryGroup.SPATIAL) and (text or k != QueryGroup.GROUNDING)}
    return DecoderOutput(preds, ranges, vis)


def _random_predictions(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(LAYERS + 1, NQ, D, generator=g),
        torch.randn(LAYERS + 1, NQ, D, generator=g),
        torch.randn(LAYERS + 1, NQ, 8, 8, generator=g),
        torch.randn(K, D, generator=g),
    )


def _perfect_predictions(t: ImageTargets):
    class_embed = torch.zeros(NQ, D)
    mask_embed = torch.zeros(NQ, D)
    masks = torch.full((NQ, 8, 8), -8.0)
    # the best an 8x8 map can do: bilinear sampling blurs the step over one low-res pixel, so points near
    # the boundary (which importance sampling seeks out) still cost a little
    def low(m):
        return torch.where(m[::4, ::4], 8.0, -8.0)
    class_embed[:Q, C] = 12.0  # object queries: no-object ...
    for n, label in enumerate(t.labels.tolist()):  # ... except q0, q1 = segments 0, 1
        class_embed[n] = 0.0
        class_embed[n, label] = 12.0
        masks[n] = low(t.masks[n])
    for s in range(S):  # grounding query Q+s says sentence s
        class_embed[Q + s] = t.sentence_embeddings[s]
        masks[Q + s] = low(t.grounding_masks[s])
    positive_mean = torch.eye(K, D) * 3.0
    for k in range(K):  # first spatial query of each object matches it
        mask_embed[2 * Q + PER_OBJ * k] = positive_mean[k] * 3.0
        masks[2 * Q + PER_OBJ * k] = low(t.spatial_masks[k])
    def rep(x):
        return x.expand(LAYERS + 1, *x.shape).clone()
    return rep(class_embed), rep(mask_embed), rep(masks), positive_mean


def _criterion() -> SeemCriterion:
    return SeemCriterion(LossWeights(), num_points=256)


@needs_scipy
def test_loss_keys_follow_official_names_with_deep_supervision():
    losses = _criterion()(_output(*_random_predictions()), _class_logits, _targets(), torch.tensor(1.0),
                          torch.Generator().manual_seed(0))
    groups = ("mask", "spatial", "grounding")
    expected = {f"loss_{g}_{t}_{i}" for g in groups for t in ("ce", "bce", "dice") for i in range(LAYERS + 1)}
    assert set(losses) == expected | {"loss"}
    assert losses["loss"].item() == pytest.approx(sum(v.item() for k, v in losses.items() if k != "loss"), rel=1e-5)
    assert all(torch.isfinite(v) for v in losses.values())
    again = _criterion()(_output(*_random_predictions()), _class_logits, _targets(), torch.tensor(1.0),
                         torch.Generator().manual_seed(0))
    assert all(torch.equal(losses[k], again[k]) for k in losses)  # deterministic given the generator


@needs_scipy
@pytest.mark.parametrize("importance, ratio", [(0.75, 0.2), (0.0, 0.08)])
def test_perfect_predictions_score_far_below_random_ones(importance, ratio):
    t = _targets()
    crit = SeemCriterion(num_points=256, importance_sample_ratio=importance)
    scale = torch.tensor(math.log(100.0))
    perfect = crit(_output(*_perfect_predictions(t)), _class_logits, t, scale, torch.Generator().manual_seed(0))
    rand = crit(_output(*_random_predictions()), _class_logits, t, scale, torch.Generator().manual_seed(0))
    assert perfect["loss"] < ratio * rand["loss"]
    for group in ("mask", "spatial", "grounding"):
        assert perfect[f"loss_{group}_ce_0"].abs() < 1e-3
        assert perfect[f"loss_{group}_dice_0"] < 0.25 * rand[f"loss_{group}_dice_0"]
        assert perfect[f"loss_{group}_bce_0"] < 0.25 * rand[f"loss_{group}_bce_0"]


@needs_scipy
def test_no_ground_truth_segments_gives_all_no_object_ce():
    class_embed, mask_embed, masks, pm = _random_predictions(3)
    empty = ImageTargets(labels=torch.zeros(0, dtype=torch.long), masks=torch.zeros(0, H, W, dtype=torch.bool))
    out = _output(class_embed, mask_embed, masks, pm, visual=False)
    losses = _criterion()(out, _class_logits, empty, torch.tensor(1.0))
    assert set(losses) == {f"loss_mask_{t}_{i}" for t in ("ce", "bce", "dice") for i in range(LAYERS + 1)} | {"loss"}
    # every query's target is no-object; equal weights -> plain mean NLL, times CLASS_WEIGHT 2
    expected = -F.log_softmax(class_embed[-1, :Q, : C + 1], -1)[:, C].mean() * 2.0
    assert losses["loss_mask_ce_0"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert losses["loss_mask_bce_0"].item() == 0.0 and losses["loss_mask_dice_0"].item() == 0.0
    assert torch.isfinite(losses["loss"])


@needs_scipy
def test_no_prompts_and_empty_spatial_ground_truth_are_finite():
    class_embed, mask_embed, masks, pm = _random_predictions(4)
    t = _targets(prompts=False)
    losses = _criterion()(_output(class_embed, mask_embed, masks, pm, visual=False), _class_logits, t, torch.tensor(1.0))
    assert not any("spatial" in k or "grounding" in k for k in losses) and torch.isfinite(losses["loss"])
    blank = ImageTargets(t.labels, t.masks, spatial_masks=torch.zeros(K, H, W, dtype=torch.bool))
    losses = _criterion()(_output(class_embed, mask_embed, masks, pm), _class_logits, blank, torch.tensor(1.0))
    assert losses["loss_spatial_ce_0"].item() == 0.0 and torch.isfinite(losses["loss"])
    with pytest.raises(ValueError, match="without a text prompt"):
        t2 = _targets()
        _criterion()(_output(class_embed, mask_embed, masks, pm, text=False), _class_logits,
                     ImageTargets(t2.labels, t2.masks, None, t2.grounding_masks, t2.sentence_embeddings), torch.tensor(1.0))


@needs_scipy
def test_gradients_reach_class_embed_mask_embed_masks_and_logit_scale():
    tensors = [x.requires_grad_() for x in _random_predictions(5)]
    logit_scale = torch.tensor(1.0, requires_grad=True)
    losses = _criterion()(_output(*tensors), _class_logits, _targets(), logit_scale, torch.Generator().manual_seed(0))
    losses["loss"].backward()
    class_embed, mask_embed, masks, pm = tensors
    for layer in range(LAYERS + 1):
        assert class_embed.grad[layer, :Q].abs().sum() > 0  # generic CE
        assert class_embed.grad[layer, Q : 2 * Q].abs().sum() > 0  # grounding CE
        assert mask_embed.grad[layer, 2 * Q :].abs().sum() > 0  # spatial CE
        assert masks.grad[layer].abs().sum() > 0
    assert pm.grad.abs().sum() > 0 and logit_scale.grad is not None
    assert all(torch.isfinite(x.grad).all() for x in tensors)


@needs_scipy
def test_duplicate_sentences_share_grounding_targets():
    class_embed, mask_embed, masks, pm = _random_predictions(6)
    t = _targets()
    same = ImageTargets(t.labels, t.masks, None, torch.stack([t.grounding_masks[0]] * 2),
                        torch.stack([t.sentence_embeddings[0]] * 2), grounding_groups=torch.tensor([7, 7]))
    losses = _criterion()(_output(class_embed, mask_embed, masks, pm, visual=False), _class_logits, same, torch.tensor(1.0),
                          torch.Generator().manual_seed(0))
    # identical sentences -> identical similarity columns; each target is 0.5/0.5 over the two matched queries
    sim = F.normalize(class_embed[-1, Q : 2 * Q], dim=-1) @ F.normalize(same.sentence_embeddings, dim=-1).t() * math.e
    logp = F.log_softmax(sim[:, 0], 0)
    pairs = [-(0.5 * (logp[a] + logp[b])).item() for a in range(Q) for b in range(Q) if a != b]
    assert any(abs(losses["loss_grounding_ce_0"].item() / 0.4 - v) < 1e-5 for v in pairs)


@needs_scipy
def test_fifty_adam_steps_halve_the_loss():
    params = [x.clone().requires_grad_() for x in _random_predictions(7)]
    crit, t = _criterion(), _targets()
    opt = torch.optim.Adam(params, lr=0.1)
    gen = torch.Generator().manual_seed(0)
    first = None
    for _ in range(50):
        loss = crit(_output(*params), _class_logits, t, torch.tensor(1.0), gen)["loss"]
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = crit(_output(*params), _class_logits, t, torch.tensor(1.0), torch.Generator().manual_seed(1))["loss"].item()
    assert final < 0.5 * first


@needs_scipy
def test_criterion_on_a_real_tiny_decoder_trains_its_parameters():
    from seem.configs import DecoderConfig
    from seem.modeling.decoder import SeemDecoder
    from seem.modeling.visual_sampler import RandomSampler

    torch.manual_seed(0)
    d = 32
    cfg = DecoderConfig(hidden_dim=d, num_queries=6, num_heads=4, dim_feedforward=64, num_layers=2, mask_dim=d,
                        dim_proj=d, in_channels=d, max_spatial_len=(16, 16, 16, 16), spatial_memories=4, query_number=2)
    decoder = SeemDecoder(cfg)
    feats = [torch.randn(1, d, s, s) for s in (2, 4, 8)]  # a 64x64 padded input
    mask_features = torch.randn(1, d, 16, 16)
    levels = decoder.prepare_features(feats)
    spatial = torch.zeros(2, 64, 64, dtype=torch.bool)
    spatial[0, :32, :32] = spatial[1, :32, 32:] = True
    t = ImageTargets(
        labels=torch.tensor([1]),
        masks=torch.ones(64, 64, dtype=torch.bool).triu()[None],
        spatial_masks=spatial,
        grounding_masks=torch.ones(1, 64, 64, dtype=torch.bool),
        sentence_embeddings=torch.randn(1, d),
    )
    sampler = RandomSampler(seed=0)
    visual = decoder.encode_visual_prompt(levels, mask_features, t.spatial_masks, torch.zeros_like(t.spatial_masks), sampler)
    out = decoder(feats, mask_features, visual=visual, text_tokens=torch.randn(3, 1, d),
                  memory_mask=torch.randn(1, 2, 16, 16), sampler=sampler, levels=levels)
    assert set(out.ranges) == {QueryGroup.OBJECT, QueryGroup.GROUNDING, QueryGroup.SPATIAL, QueryGroup.SPATIAL_MEMORY}
    vocab = F.normalize(torch.randn(3, d), dim=-1)  # 2 classes + background
    scale = torch.tensor(1.0, requires_grad=True)
    losses = SeemCriterion(num_points=64)(out, lambda e: scale.exp() * F.normalize(e, dim=-1) @ vocab.t(), t, scale,
                                          torch.Generator().manual_seed(0))
    assert len(losses) == 9 * (cfg.num_layers + 1) + 1 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    for p in (decoder.query_feat.weight, decoder.class_embed, decoder.mask_embed.layers[0].weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
