"""A training subset packed into one small file, for machines that cannot see ``../shared/datasets``.

A GPU lent for a few minutes gets at most 64 MiB of inputs, so ``write_pack`` draws training samples from
:class:`seem.data.real_mix.RealMixture` (the same seeds as a CPU run: copy-paste, jitter and phrases are
baked in) and stores each as a JPEG plus bit-packed, zlib-compressed masks, until the byte budget is used.
``PackedSamples`` reads it back as :class:`seem.data.real_mix.MixedSample` records, with a random
horizontal flip per read so that epochs over a small pack differ.

File layout (``.npz``, no pickles): ``meta`` is UTF-8 JSON ``{"format": "seem-pack-1", "size": S,
"samples": [{"class_names", "roles", "expressions", "vocabulary", "num_masks"}, ...]}``; ``image_{i}`` the
JPEG bytes (``uint8``); ``masks_{i}`` ``np.packbits`` of the ``(N, S, S)`` bool masks, zlib-compressed.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
from PIL import Image

from seem.data.real_mix import MixedSample
from seem.errors import ConfigError

FORMAT = "seem-pack-1"
MIB = 1 << 20
_JPEG_QUALITY = 92
_ZIP_OVERHEAD = 512  # bytes a zip member adds to its payload (headers, names), an upper bound


def encode_sample(sample: MixedSample) -> tuple[dict, np.ndarray, np.ndarray]:
    """``(meta, jpeg bytes, compressed masks)`` of one draw; ``meta`` is JSON-ready."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(sample.image)).save(buf, format="JPEG", quality=_JPEG_QUALITY)
    masks = np.asarray(sample.masks, dtype=bool)
    packed = zlib.compress(np.packbits(masks.reshape(-1)).tobytes(), 6)
    meta = {"class_names": list(sample.class_names), "roles": list(sample.roles),
            "expressions": [[str(t), int(i)] for t, i in sample.expressions],
            "vocabulary": list(sample.vocabulary), "num_masks": int(masks.shape[0]),
            "mask_size": [int(masks.shape[1]), int(masks.shape[2])] if masks.ndim == 3 else [0, 0]}
    return meta, np.frombuffer(buf.getvalue(), np.uint8), np.frombuffer(packed, np.uint8)


def write_pack(samples: Iterator[MixedSample], path: str | Path, max_mib: float = 64.0,
               max_samples: int | None = None) -> dict:
    """Write draws from ``samples`` to ``path`` until the next one would pass ``max_mib``; returns a summary.

    Raises:
        ConfigError: ``max_mib`` leaves room for no sample.
    """
    budget = int(max_mib * MIB) - 64 * 1024  # room for the JSON meta member
    arrays: dict[str, np.ndarray] = {}
    metas: list[dict] = []
    used, size = 0, 0
    for sample in samples:
        if max_samples is not None and len(metas) >= max_samples:
            break
        meta, jpeg, masks = encode_sample(sample)
        cost = jpeg.nbytes + masks.nbytes + 2 * _ZIP_OVERHEAD + 200 * (len(meta["class_names"]) + 1)
        if used + cost > budget:
            break
        i = len(metas)
        arrays[f"image_{i}"], arrays[f"masks_{i}"] = jpeg, masks
        metas.append(meta)
        used += cost
        size = int(sample.image.shape[0])
    if not metas:
        raise ConfigError(f"a pack of {max_mib} MiB holds no sample; raise max_mib")
    meta_json = json.dumps({"format": FORMAT, "size": size, "samples": metas})
    arrays["meta"] = np.frombuffer(meta_json.encode("utf-8"), np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        # JPEG and zlib payloads do not compress further; Any: numpy's stub lets a ** dict bind allow_pickle
        cast(Any, np.savez)(f, **arrays)
    tmp.replace(path)
    return {"path": str(path), "samples": len(metas), "bytes": path.stat().st_size}


class PackedSamples:
    """The draws of a pack file; ``pack.sample(seed)`` gives one, flipped left-right for odd draws of ``seed``.

    Raises:
        ConfigError: not a pack file (missing members, wrong format tag, masks of the wrong size).
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"training pack {path} not found")
        try:
            self._npz = np.load(path, allow_pickle=False)
            meta = json.loads(self._npz["meta"].tobytes().decode("utf-8"))
        except KeyError:
            raise ConfigError(f"{path} is not a seem training pack (no 'meta' member)") from None
        except (OSError, ValueError, UnicodeDecodeError):
            # numpy's own messages suggest allow_pickle=True, which a pack never needs and must not get
            raise ConfigError(f"{path} is not a seem training pack (not an .npz archive of plain arrays, "
                              "or its metadata is not JSON)") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ConfigError(f"{path}: format {meta.get('format') if isinstance(meta, dict) else None!r}, "
                              f"expected {FORMAT!r}")
        self.path = path
        self.size = int(meta["size"])
        self.meta: list[dict] = meta["samples"]
        self.vocabulary: tuple[str, ...] = tuple(dict.fromkeys(n for m in self.meta for n in m["vocabulary"]))

    def __len__(self) -> int:
        return len(self.meta)

    def __getitem__(self, i: int) -> MixedSample:
        m = self.meta[i]
        image = np.asarray(Image.open(io.BytesIO(self._npz[f"image_{i}"].tobytes())).convert("RGB"))
        n, (h, w) = int(m["num_masks"]), m["mask_size"]
        bits = np.frombuffer(zlib.decompress(self._npz[f"masks_{i}"].tobytes()), np.uint8)
        masks = np.unpackbits(bits, count=n * h * w).reshape(n, h, w).astype(bool)
        if n and masks.shape[1:] != image.shape[:2]:
            raise ConfigError(f"{self.path}: sample {i} has {masks.shape[1:]} masks for a {image.shape[:2]} image")
        return MixedSample(image, masks, list(m["class_names"]), list(m["roles"]),
                           [(str(t), int(k)) for t, k in m["expressions"]], tuple(m["vocabulary"]))

    def sample(self, seed: int) -> MixedSample:
        """Draw ``seed % len`` (a fixed permutation per epoch), mirrored when the epoch's coin says so.
        Referring phrases that name a side ("left", "right") are mirrored too."""
        epoch, k = divmod(int(seed), len(self))
        order = np.random.default_rng([epoch, 7]).permutation(len(self))
        s = self[int(order[k])]
        if np.random.default_rng([int(seed), 11]).random() < 0.5:
            return s
        swap = {"left": "right", "right": "left"}
        phrases = [(" ".join(swap.get(w, w) for w in t.split(" ")), i) for t, i in s.expressions]
        return MixedSample(s.image[:, ::-1].copy(), s.masks[:, :, ::-1].copy(), s.class_names, s.roles,
                           phrases, s.vocabulary)
