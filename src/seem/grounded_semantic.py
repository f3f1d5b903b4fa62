"""Semantic segmentation with each class name also grounded: the name's referring mask added to its class map.

Mask2Former's semantic inference (official ``semantic_inference``, :func:`seem.postprocess.semantic_inference`)
labels pixels through the object queries' class scores. SEEM's grounding path answers each class name as a text
prompt with its own mask (Eq. 6, the referring path of ``predict(text=...)``). With ``text_grounding=True``,
:func:`seem.everything.segment_everything` adds the sigmoid of each name's grounded mask logits to that name's
semantic map before the argmax, with equal weight (a query-summed map, ``sum_q p(c | q) sigmoid(m_q)``, can exceed 1;
the grounded one lies in [0, 1]). Not in the official code.

A text round presumes its phrase is in the image: every name gets a mask, so the option suits vocabularies of
classes that are there (a street scene's 11 CamVid classes), not long lists of mostly absent ones. Measured with the
bundled ``seem_tiny`` (README, the bundled model): CamVid semantic mIoU on the held-out tenth of CamVid train
44.6 -> 47.0 %, on CamVid val 42.6 -> 45.4 %; on held-out COCO photos with the 80 thing names pixel accuracy fell.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from seem import postprocess as pp
from seem.grounding_choice import grounded_text
from seem.prompt_round import decode_round
from seem.prompts import Prompts
from seem.structures import SemanticResult
from seem.vocabularies import display_name

if TYPE_CHECKING:
    from seem.predictor import SeemPredictor


def add_grounded_maps(predictor: SeemPredictor, names: Sequence[str], probs: Tensor,
                      run: Callable[[Callable[[], None]], None] | None = None) -> None:
    """Adds to each class map of ``probs`` ``(C, h, w)`` (in place, at its size: the original one, or the resized
    one for images above :func:`seem.everything.segment_everything`'s memory budget) its name's grounded map
    (:func:`grounded_class_map`). Each name is grounded by the text of its display name (``"wall-other-merged"`` ->
    ``"wall"``), as its class embedding is made. ``run`` runs each name's step ``fn()`` under
    ``torch.inference_mode`` (default: calls it so); a server passes its bulk queue, so clicks are served between
    names.

    Raises:
        PromptError: a name that is not a valid text prompt. ImageError: no image set.
    """
    step = run or _in_inference_mode
    for c, name in enumerate(names):
        step(functools.partial(_add_map, predictor, display_name(name), probs[c]))


def add_text_grounding(predictor: SeemPredictor, result: SemanticResult,
                       run: Callable[[Callable[[], None]], None] | None = None) -> SemanticResult:
    """``result`` of ``segment_everything(..., kind="semantic")`` on ``predictor``'s current image -> the same as
    ``text_grounding=True`` gives: :func:`add_grounded_maps` on ``result.probabilities`` (updated in place; ``run``
    as there), the label map their argmax at the original size. For callers that step the names themselves (the
    server).

    Raises:
        PromptError: a name that is not a valid text prompt. ImageError: no image set.
    """
    frame, _ = predictor._require_image()
    probs = torch.from_numpy(result.probabilities)
    add_grounded_maps(predictor, result.vocabulary, probs, run)
    labels = frame.maps_to_original(probs.argmax(0)[None])[0].long()
    return SemanticResult(result.probabilities, labels.numpy(), result.vocabulary)


def grounded_class_map(predictor: SeemPredictor, text: str, work_size: tuple[int, int]) -> Tensor:
    """``(h, w)`` float32 in [0, 1] at ``work_size``: the sigmoid of ``text``'s grounded mask logits.

    ``text`` is its own text round on the predictor's image (decoder only; the image encoding is reused): in one
    round the grounding queries read every phrase's tokens, so a name's mask would depend on the other names and
    their order. Logits go to ``work_size`` the way :func:`seem.everything.segment_everything` takes its query
    masks there (bilinear to the padded input, crop, resize; official ``sem_seg_postprocess``).
    """
    frame, _ = predictor._require_image()
    _, logits = grounded_text(predictor, decode_round(predictor, Prompts(text=[text]), None, joint_prompts=True))
    full = pp.sem_seg_postprocess(pp.upsample_to_input(logits, frame.padded_size), frame.resized_size, work_size)
    return full[0].sigmoid()


def _add_map(predictor: SeemPredictor, text: str, out: Tensor) -> None:
    out += grounded_class_map(predictor, text, (int(out.shape[0]), int(out.shape[1]))).to(out.dtype)


def _in_inference_mode(fn: Callable[[], None]) -> None:
    with torch.inference_mode():
        fn()
