"""Dataset readers for fine-tuning; each is lazy, indexable and deterministic, and yields :class:`Sample`.

* :class:`CocoPanopticReader` - COCO panoptic (JSON + RGB-encoded id PNGs), things and stuff.
* :class:`RefCocoReader` - RefCOCO / RefCOCO+ / RefCOCOg (``refer`` layout), one sample per image with
  referring expressions; the refs pickle is read with a builtins-only unpickler.
* :class:`MaskFolderReader` - your own ``images/`` + ``masks/`` folder, with a class list or JSON sidecars.

They can be mixed (``torch.utils.data.ConcatDataset`` accepts them as they are) and pickled into
DataLoader workers: they hold only paths and parsed annotations, no open files.
"""

from __future__ import annotations

from seem.data.readers_coco import CocoPanopticReader
from seem.data.readers_folder import MaskFolderReader
from seem.data.readers_refcoco import RefCocoReader, load_refs
from seem.data.sample import Sample

__all__ = ["CocoPanopticReader", "MaskFolderReader", "RefCocoReader", "Sample", "load_refs"]
