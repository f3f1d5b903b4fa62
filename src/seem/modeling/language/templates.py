"""Prompt templates and class-name cleanup of the official SEEM / X-Decoder text side.

Source: ``utils/prompt_engineering.py::get_prompt_templates`` (the 80 CLIP ImageNet templates preceded by
``'{}.'``: 81 in all, in this order) and the class-name cleanup inlined in
``modeling/language/vlpencoder.py::LanguageEncoder.get_text_embeddings``.

The official cleanup only deletes the COCO-panoptic suffixes ``-other``, ``-merged`` and ``-stuff`` (in that
order, with ``str.replace``, anywhere in the name: ``'wall-other-merged'`` -> ``'wall'``). It does **not**
replace other hyphens or underscores: ``'t-shirt'`` stays ``'t-shirt'`` and ``'traffic_light'`` stays
``'traffic_light'`` (the shipped class lists already use spaces). Training additionally goes through
``prompt_engineering``, which deletes ``','`` and turns ``'+'`` into a space (``training=True`` below).
"""

from __future__ import annotations

# utils/prompt_engineering.py::get_prompt_templates, same order (index 0 is the bare class name + '.').
TEMPLATES: tuple[str, ...] = (
    "{}.",
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

# Suffixes of COCO-panoptic class names that get_text_embeddings deletes before templating, in its order.
CLASS_NAME_SUFFIXES: tuple[str, ...] = ("-other", "-merged", "-stuff")


def clean_class_name(name: str, *, training: bool = False) -> str:
    """Class name as the official code puts it into a template.

    ``training=False`` (evaluation, ``get_text_embeddings(is_eval=True)``): delete ``-other``, ``-merged``,
    ``-stuff``. ``training=True`` (``prompt_engineering``): additionally delete ``','`` and map ``'+'`` to
    ``' '``.
    """
    for suffix in CLASS_NAME_SUFFIXES:
        name = name.replace(suffix, "")
    if training:
        name = name.replace(",", "").replace("+", " ")
    return name
