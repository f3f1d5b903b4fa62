"""What every whole-data-set run shares: how many samples, a description of the data set, JSON-able values
and the optional progress bar (:mod:`seem.evaluation.runner`, :mod:`seem.evaluation.video_runner`,
:mod:`seem.evaluation.scenes_eval`)."""

from __future__ import annotations

import numpy as np


def num_samples(dataset, limit: int | None) -> int:
    """The first ``limit`` samples of ``dataset`` (all when ``None``); ValueError for a negative ``limit``."""
    if limit is not None and int(limit) < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    return len(dataset) if limit is None else min(int(limit), len(dataset))


def describe_dataset(dataset) -> dict:
    """The data set's own ``describe()``, else its type, repr and size."""
    if hasattr(dataset, "describe"):
        return dataset.describe()
    return {"type": type(dataset).__name__, "repr": repr(dataset), "num_images": len(dataset)}


def to_plain(x):
    """NumPy scalars / arrays and tuples -> Python values and lists, recursively (for ``json.dump``)."""
    if isinstance(x, dict):
        return {(k if isinstance(k, str) else str(to_plain(k))): to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_plain(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    return x


def progress_bar(items, enabled: bool, total: int | None = None, desc: str = ""):
    """``items`` wrapped in a tqdm bar when ``enabled`` and tqdm is installed, else ``items``."""
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional
        return items
    return tqdm(items, total=total, desc=desc, dynamic_ncols=True)
