"""The refine scorer (seem.candidates.visual_scorer): a learned choice among the click candidates of later rounds,
where the previous round's mask is the memory prompt."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from seem import SeemPredictor, from_pretrained
from seem.candidates import NUM_FEATURES, CandidateScorer, visual_scorer
from seem.prompts import Prompts
from test_candidates import _bundled, exported_with  # _bundled: the bundled model on the VOC photo, shared
from test_candidates import _largest_mask_scorer as largest_mask_scorer

CLICKS = Prompts(points=[[230, 220], [100, 300]], point_labels=[1, 0])


def _largest_mask_scorer() -> CandidateScorer:
    return largest_mask_scorer(NUM_FEATURES, "refine scorer").eval()


def test_which_rounds_take_the_refine_scorer():
    class Model:
        candidate_scorer, box_scorer, refine_scorer = "first", "boxes", "refine"

    memory = torch.zeros(1, 4, 4)
    assert visual_scorer(Model, CLICKS, None, True) == "first"
    assert visual_scorer(Model, CLICKS, memory, True) == "refine"
    assert visual_scorer(Model, CLICKS, memory, False) is None  # trained on click-fitted candidates
    assert visual_scorer(Model, Prompts(boxes=[[0, 0, 20, 20]]), memory, True) is None
    mixed = Prompts(boxes=[[0, 0, 20, 20]], points=[[10, 10]], point_labels=[1])
    assert visual_scorer(Model, mixed, memory, True) is None
    assert visual_scorer(Model, Prompts(points=[[10, 10]], text="cat"), memory, True) is None

    class Official:
        candidate_scorer = box_scorer = refine_scorer = None

    assert visual_scorer(Official, CLICKS, memory, True) is None


def test_predictor_returns_the_refine_scorers_choice_in_later_rounds_only():
    p = _bundled()
    model = p.model
    keep = model.refine_scorer, model.config
    try:
        first = p.predict(CLICKS)
        model.refine_scorer = _largest_mask_scorer()
        cands = p.click_candidates(CLICKS, first)
        largest = int(cands.features[:, 0].argmax())
        eq5 = int((cands.features[:, 8] >= 0).nonzero()[0])
        assert largest != eq5  # the test tells the two picks apart
        torch.testing.assert_close(p.predict(CLICKS, memory=first).logits_lowres[0], cands.logits[largest])
        # the first round is the candidate scorer's, whatever the refine scorer
        torch.testing.assert_close(p.predict(CLICKS).logits_lowres, first.logits_lowres)
        # off for one call, in the config, or without a refine scorer (an official checkpoint): Eq. 5
        torch.testing.assert_close(p.predict(CLICKS, memory=first, candidate_scorer=False).logits_lowres[0],
                                   cands.logits[eq5])
        model.config = dataclasses.replace(keep[1], inference=dataclasses.replace(keep[1].inference,
                                                                                  candidate_scorer=False))
        torch.testing.assert_close(p.predict(CLICKS, memory=first).logits_lowres[0], cands.logits[eq5])
        model.config, model.refine_scorer = keep[1], None
        torch.testing.assert_close(p.predict(CLICKS, memory=first).logits_lowres[0], cands.logits[eq5])
    finally:
        model.refine_scorer, model.config = keep


def test_later_rounds_compare_each_candidate_with_the_memory_mask():
    """Columns 22-23 (seem.candidates.memory_features) against the previous round's mask; zeros in a first round."""
    from seem.candidates import CLICK_FEATURES

    p = _bundled()
    first = p.predict(CLICKS)
    assert bool((p.click_candidates(CLICKS).features[:, CLICK_FEATURES:] == 0).all())
    later = p.click_candidates(CLICKS, first)
    h, w = p.frame.lowres_valid_size
    mem = (first.logits_lowres[0, :h, :w] > 0).flatten().float()
    for n in (0, 7, 23):
        cand = (later.logits[n, :h, :w] > 0).flatten().float()
        inter = float((cand * mem).sum())
        iou = inter / float(cand.sum() + mem.sum() - inter)
        assert later.features[n, 22].item() == pytest.approx(iou, abs=1e-6)
        assert later.features[n, 23].item() == pytest.approx(inter / float(mem.sum()), abs=1e-6)
    assert float(later.features[:, 22].max()) > 0.5  # some candidate keeps most of the previous mask

def test_a_box_refined_with_clicks_keeps_its_bound_and_eq5():
    """A box with clicks and memory is decoded as clicks plus an anchor click, bounded by the box (seem.box_anchor):
    the scored path would drop the bound, so the refine scorer does not act there."""
    p = _bundled()
    model = p.model
    keep = model.refine_scorer
    box = dict(boxes=[[150, 100, 330, 360]])
    try:
        first = p.predict(**box)
        again = dict(box, points=[[[240, 200], [300, 330]]], point_labels=[[1, 0]], memory=first)
        model.refine_scorer = None
        eq5 = p.predict(**again)
        model.refine_scorer = _largest_mask_scorer()
        torch.testing.assert_close(p.predict(**again).logits_lowres, eq5.logits_lowres)
    finally:
        model.refine_scorer = keep


def test_collect_keeps_the_refine_rounds_only(tmp_path):
    """REFINE plays 3 rounds and keeps rounds 2 and 3: every group has at least two clicks (feature 10: (clicks - 1)
    / 4)."""
    from seem.data.real_sets import load_set
    from seem.train.candidate_scorer import REFINE, ScorerTrainConfig, collect
    from test_real_mix import _write_set

    _write_set(tmp_path, "ccp", "panoptic_person.json", "panoptic_person", {"p0": [(1, (2, 46, 10, 40))]},
               [{"id": 1, "name": "person", "isthing": 1}])
    _write_set(tmp_path, "ccp", "panoptic_parts.json", "panoptic_parts", {"p0": [(1, (2, 10, 10, 40))]},
               [{"id": 1, "name": "hair", "isthing": 1}])
    records = load_set(tmp_path, "ccp", "all")
    predictor = SeemPredictor(from_pretrained(), vocabulary_cache_dir=None)
    assert (REFINE.rounds, REFINE.first_round) == (3, 1)
    first, _ = collect(predictor, records, ScorerTrainConfig(min_area=10))
    later, ious = collect(predictor, records, dataclasses.replace(REFINE, min_area=10))
    assert len(first) == 1 and 1 <= len(later) <= 2 and ious.shape == later.shape[:2]  # rounds end at the target
    assert (4 * later[:, 0, 10] + 1).tolist() == list(range(2, 2 + len(later)))
    assert float(4 * first[0, 0, 10] + 1) == 1.0
    assert bool(((ious >= 0) & (ious <= 1)).all())


def test_export_and_refits_keep_the_other_scorers(tmp_path):
    from seem.modeling.precision import decoding_copy
    from seem.train.candidate_scorer import model_without_scorer

    model, out = exported_with(tmp_path, "refine_scorer", _largest_mask_scorer())
    x = torch.randn(5, NUM_FEATURES)
    loaded = from_pretrained(str(out))
    torch.testing.assert_close(loaded.refine_scorer(x), model.refine_scorer(x))
    for precision in ("bf16-all", "int8"):  # the reduced-precision copies share the fp32 scorer
        assert decoding_copy(loaded, precision).refine_scorer is loaded.refine_scorer
    no_refine = model_without_scorer(str(out), "refine_scorer")
    assert no_refine.refine_scorer is None and no_refine.config.refine_scorer_hidden == 0
    assert no_refine.candidate_scorer is not None and no_refine.box_scorer is not None
    torch.testing.assert_close(model_without_scorer(str(out), "candidate_scorer").refine_scorer(x), model.refine_scorer(x))


def test_bundled_model_has_the_refine_scorer_the_registry_declares():
    from seem.registry import get_variant

    model = _bundled().model
    assert get_variant("seem_tiny").config.refine_scorer_hidden == 32 == model.config.refine_scorer_hidden
    assert isinstance(model.refine_scorer, CandidateScorer) and model.refine_scorer.name == "refine scorer"
    assert model.refine_scorer.num_features == NUM_FEATURES
    assert not torch.equal(model.refine_scorer.feature_std, torch.ones(NUM_FEATURES))  # fitted
    assert not torch.equal(model.refine_scorer.fc1.weight, model.candidate_scorer.fc1.weight)  # its own
    for name, config in (("seem_focalt_v1", get_variant("seem_focalt_v1").config),):
        assert config.refine_scorer_hidden == 0, name  # official checkpoints: Eq. 5


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_refine_scorer_width_is_checked(bad):
    from seem.build import check_config
    from seem.errors import ConfigError
    from seem.registry import get_variant

    with pytest.raises(ConfigError, match="refine_scorer_hidden"):
        check_config(dataclasses.replace(get_variant("seem_tiny").config, refine_scorer_hidden=bad))


def test_a_checkpoint_without_the_refine_scorer_names_it_and_its_trainer():
    from seem.build import build_seem
    from seem.checkpoint import load_state_dict_strict
    from seem.errors import CheckpointError
    from seem.registry import get_variant

    state = {k: v for k, v in from_pretrained().state_dict().items() if not k.startswith("refine_scorer.")}
    with pytest.raises(CheckpointError, match=r"missing keys(.|\n)*has no refine scorer(.|\n)*--prompt refine"):
        load_state_dict_strict(build_seem(get_variant("seem_tiny").config), state)



def test_trainer_fits_the_refine_scorer_on_later_click_rounds(tmp_path, monkeypatch, capsys):
    """``--prompt refine`` end to end on generated sets: click rounds (never the box collection), a refine scorer in
    the output next to the input's other scorers, and the command in the output's source."""
    from seem.checkpoint import read_safetensors_metadata
    from seem.train import candidate_scorer
    from test_real_mix import _write_set

    things = [{"id": 1, "name": "dog", "isthing": 1}, {"id": 2, "name": "cup", "isthing": 1}]
    for name in ("coco128", "camvid"):
        _write_set(tmp_path, name, "panoptic_train.json", "panoptic_train",
                   {f"{name}{i}": [(1, (4, 30, 4, 30)), (2, (30, 44, 40, 60))] for i in range(3)}, things)
    _write_set(tmp_path, "ccp", "panoptic_person.json", "panoptic_person", {"p0": [(1, (2, 46, 10, 40))]},
               [{"id": 1, "name": "person", "isthing": 1}])
    _write_set(tmp_path, "ccp", "panoptic_parts.json", "panoptic_parts", {"p0": [(1, (2, 10, 10, 40))]},
               [{"id": 1, "name": "hair", "isthing": 1}])

    def no_boxes(*args):
        raise AssertionError("the refine scorer is fitted on click rounds")

    monkeypatch.setattr(candidate_scorer, "collect_boxes", no_boxes)
    out = tmp_path / "out.safetensors"
    assert candidate_scorer.main([str(out), "--data", str(tmp_path), "--prompt", "refine", "--threads", "1"]) == 0
    assert "refine rounds" in capsys.readouterr().out
    model, bundled = from_pretrained(str(out)), from_pretrained()
    assert model.config.refine_scorer_hidden == 32
    assert not torch.equal(model.refine_scorer.fc1.weight, bundled.refine_scorer.fc1.weight)  # fitted anew
    torch.testing.assert_close(model.candidate_scorer.fc1.weight, bundled.candidate_scorer.fc1.weight)
    assert read_safetensors_metadata(out)["source"].endswith("refine scorer (python -m seem.train.candidate_scorer "
                                                             "--prompt refine)")
