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
44.5 -> 46.9 %, on CamVid val 42.6 -> 45.3 %; on held-out COCO photos with the 80 thing names pixel accuracy fell.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from torch import Tensor

from seem import postprocess as pp
from seem.grounding_choice import grounded_text
from seem.prompt_round import decode_round
from seem.prompts import Prompts

if TYPE_CHECKING:
    from seem.predictor import SeemPredictor


def grounded_class_maps(predictor: SeemPredictor, names: Sequence[str], work_size: tuple[int, int]) -> Iterator[Tensor]:
    """One ``(h, w)`` float32 map in [0, 1] per name, in order: the sigmoid of the name's grounded mask logits.

    Each name is its own text round on the predictor's image (decoder only; the image encoding is reused): in one
    round the grounding queries read every phrase's tokens, so a name's mask would depend on the other names and
    their order. Logits go to ``work_size`` the way :func:`segment_everything` takes its query masks there
    (bilinear to the padded input, crop, resize; official ``sem_seg_postprocess``). A generator, so the caller
    holds one map at a time.

    Raises:
        PromptError: a name that is not a valid text prompt (more than 77 tokens).
        ImageError: no image set.
    """
    frame, _ = predictor._require_image()
    for name in names:
        _, logits = grounded_text(predictor, decode_round(predictor, Prompts(text=[name]), None, joint_prompts=True))
        full = pp.sem_seg_postprocess(pp.upsample_to_input(logits, frame.padded_size), frame.resized_size, work_size)
        yield full[0].sigmoid()
