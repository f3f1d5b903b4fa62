"""``seem label``: label a folder, glob or list of images into COCO instance JSON and / or COCO panoptic PNG +
JSON, resumably, with bounded memory, on one process or on every rank of ``torchrun``.

* :mod:`seem.labeling.records`: one image -> its COCO records (instances from ``find`` or a vocabulary, a
  panoptic segmentation).
* :mod:`seem.labeling.parts`: per-image part files written atomically (the unit of resumption).
* :mod:`seem.labeling.run`: the labelling loop of one rank (its share of the images) with a progress bar.
* :mod:`seem.labeling.merge`: part files -> one ``instances.json`` / ``panoptic.json``, streamed.
* :mod:`seem.labeling.distributed`: rank / world size from torchrun's environment, gloo barrier.
"""
