"""Prompts: what a user points at, checked once, and turned into the model's region masks.

* :class:`Prompts` (:mod:`seem.prompts.value`): the typed, frozen value that
  :meth:`seem.SeemPredictor.predict` takes: points with labels, boxes, scribbles, polygons, masks, text and
  a :class:`ReferencePrompt`. Its constructor validates the form of each field; :meth:`Prompts.to_regions`
  validates against the image and converts.
* :mod:`seem.prompts.checks`: the checks, each error naming its field (``points[2]: point (700, 10) is
  outside the image ...``); the server uses the same ones for the fields of its requests.
* :mod:`seem.prompts.regions`: visual prompts -> :class:`RegionPrompts` in the padded model frame.

Adding a prompt type: a field and its check in :class:`Prompts`, its conversion in
:func:`seem.prompts.regions.prompt_regions`, and the decoder only if the model has no encoder for it yet.
"""

from __future__ import annotations

from seem.prompts.regions import CLICK_RADIUS, RegionPrompts, mask_regions
from seem.prompts.value import Prompts, ReferencePrompt

__all__ = ["CLICK_RADIUS", "Prompts", "ReferencePrompt", "RegionPrompts", "mask_regions"]
