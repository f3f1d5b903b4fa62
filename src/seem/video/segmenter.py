"""Zero-shot video object segmentation from a referred region, one frame at a time.

SEEM segments video without any training on video (Zou et al., NeurIPS 2023, §4 "video object
segmentation", DAVIS17 J&F 60.4 for SEEM-T): an object marked on one frame is a *referred region*, and its
visual prompt tokens, sampled on that frame's features, segment the same object on every other frame. The
official demo does exactly this frame by frame (``referring_image`` / ``evaluate_referring_image``): mode
``"independent"`` here. Mode ``"memory"`` (ours, default) also passes the previous frame's mask logits of each
object as SEEM's memory prompt (the mask-guided prompt of multi-round interaction), which keeps the
prediction near where the object was.

Memory does not grow with the video: per object only the reference tokens and the last frame's low-res
logits are kept; frames and features are never stored, results are yielded. Only frames *before* the latest
reference frame are buffered by :meth:`VideoSegmenter.run` (at most ``max(frame_index)`` frames).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from seem.errors import ImageError, PromptError
from seem.prompts import Prompts, ReferencePrompt

MODES = ("memory", "independent")
MAX_OBJECT_ID = 65535  # label PNGs: 8-bit palette up to 255, 16-bit gray above


@torch.inference_mode()
def reference_from_current(predictor, masks) -> ReferencePrompt:
    """Referred-region tokens of ``masks`` on the image already set on ``predictor`` (no re-encoding).

    Same tokens as ``predictor.encode_reference(image, masks)`` for the image last given to ``set_image``
    (same sampler), without running the image encoder again.

    Args:
        predictor: a :class:`seem.SeemPredictor` with an image set.
        masks: ``(H, W)`` bool region (one object) or ``(K, H, W)`` (K objects), original image frame.

    Raises:
        ImageError: no image set. PromptError: empty or wrongly sized masks.
    """
    return predictor.reference_from_current(masks)


def concat_references(references: list[ReferencePrompt]) -> ReferencePrompt:
    """One :class:`ReferencePrompt` holding the objects of ``references`` in order (:meth:`ReferencePrompt.concat`)."""
    return ReferencePrompt.concat(references)


@dataclass(frozen=True)
class FrameResult:
    """The objects of one frame.

    Attributes:
        frame_index: 0-based index of the frame in the stream.
        size: ``(H, W)`` of the frame.
        masks: ``{obj_id: (H, W) bool}`` in the frame's pixels (row = y, column = x).
        scores: ``{obj_id: float}`` in [0, 1] (:attr:`seem.Prediction.scores`).
        labels: ``{obj_id: str}``, the vocabulary label of each mask.
    """

    frame_index: int
    size: tuple[int, int]
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)
    labels: dict[int, str] = field(default_factory=dict)

    def label_map(self) -> np.ndarray:
        """``(H, W)`` DAVIS-style label map: 0 = background, else the object id (uint8, or uint16 above 255).

        Where masks overlap, the object with the higher score wins."""
        dtype = np.uint16 if any(i > 255 for i in self.masks) else np.uint8
        out = np.zeros(self.size, dtype=dtype)
        for obj_id in sorted(self.masks, key=lambda i: self.scores.get(i, 0.0)):
            out[self.masks[obj_id]] = obj_id
        return out


@dataclass
class _Object:
    obj_id: int
    frame_index: int
    prompts: Prompts
    given_mask: np.ndarray | None  # a mask-only prompt is the object's mask on its reference frame
    reference: ReferencePrompt | None = None
    memory: torch.Tensor | None = None  # (1, h, w) logits of the last forward frame
    pending: tuple | None = None  # the reference frame's result, computed ahead by run()


def _object_prompts(points, point_labels, box, scribble, polygon, mask, text) -> Prompts:
    """The prompts of one object (K = 1); :class:`Prompts` checks their form now, the frame checks the rest."""
    if all(v is None for v in (points, point_labels, box, scribble, polygon, mask, text)):
        raise PromptError("no prompt given: pass points, box, scribble, polygon, mask or text")
    if text is not None and (not isinstance(text, str) or not text.strip()):
        raise PromptError(f"text must be one non-empty string, got {text!r:.80}")
    try:
        one_click = points is not None and np.asarray(points, dtype=np.float64).ndim == 1
    except (TypeError, ValueError):  # not numbers: Prompts names the problem
        one_click = False
    prompts = Prompts(points=[points] if one_click else points, point_labels=point_labels,
                      boxes=None if box is None else [box], scribbles=None if scribble is None else [scribble],
                      polygons=None if polygon is None else [polygon], masks=None if mask is None else [mask],
                      text=text)
    if prompts.points is not None and len(prompts.points) != 1:
        raise PromptError("points: one object per add_object call, give (N, 2) (x, y) clicks")
    return prompts


class VideoSegmenter:
    """Follow objects marked on reference frames through a stream of frames (see the module docstring).

    Args:
        predictor: a :class:`seem.SeemPredictor`; its image state is overwritten frame by frame.
        mode: ``"memory"`` (reference + previous frame's mask as memory prompt) or ``"independent"``
            (reference only, every frame on its own: the paper's and the official demo's protocol).
        batch_objects: decode all tracked objects of a frame in one decoder pass (v1 models; shared point
            budget, as SEEM v1 was trained); ``False``, or a v0 model, runs one pass per object.

    Usage::

        seg = VideoSegmenter(predictor)
        seg.add_object(1, frame_index=0, points=[[120, 80]])
        for t, result in seg.run(frames):     # frames: any iterable of (H, W, 3) uint8 RGB arrays
            result.masks[1]                   # (H, W) bool

    Raises:
        ValueError: an unknown ``mode``.
    """

    def __init__(self, predictor, mode: str = "memory", batch_objects: bool = True) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.predictor = predictor
        self.mode = mode
        self.batch_objects = batch_objects and predictor.model.config.decoder.version == "v1"
        self._objects: dict[int, _Object] = {}
        self._next_index = 0

    @property
    def object_ids(self) -> list[int]:
        return sorted(self._objects)

    def add_object(self, obj_id: int, frame_index: int = 0, *, points=None, point_labels=None, box=None,
                   scribble=None, polygon=None, mask=None, text: str | None = None) -> None:
        """Define object ``obj_id`` by prompts on frame ``frame_index`` (pixels of that frame).

        Prompts combine into one object (as in :meth:`seem.SeemPredictor.predict`): ``points`` ``(N, 2)`` (x, y)
        with ``point_labels`` ``(N,)`` 1/0; ``box`` ``(4,)`` XYXY; ``scribble`` ``(H, W)`` bool or ``(M, 2)``
        polyline; ``polygon`` ``(M, 2)`` vertices; ``mask`` ``(H, W)`` bool; ``text`` a referring phrase. The
        object's mask on that frame is the prediction from these prompts, except a ``mask`` given alone, which
        is used as is (the semi-supervised VOS protocol: the first frame's mask is given). Prompts are checked
        against the frame when it arrives (PromptError then).

        Raises:
            PromptError: ``obj_id`` not an int in 1..65535 or already used, a negative ``frame_index`` or a frame
                already processed, no prompt, malformed prompts (see :class:`seem.Prompts`).
        """
        if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)) or not 1 <= obj_id <= MAX_OBJECT_ID:
            raise PromptError(f"obj_id must be an integer in 1..{MAX_OBJECT_ID} (0 is background), got {obj_id!r}")
        if int(obj_id) in self._objects:
            raise PromptError(f"object {obj_id} is already defined")
        if isinstance(frame_index, bool) or not isinstance(frame_index, (int, np.integer)) or frame_index < 0:
            raise PromptError(f"frame_index must be an integer >= 0, got {frame_index!r}")
        if frame_index < self._next_index:
            raise PromptError(f"frame {frame_index} was already processed (next frame: {self._next_index})")
        prompts = _object_prompts(points, point_labels, box, scribble, polygon, mask, text)
        alone = all(v is None for v in (points, box, scribble, polygon, text))
        given = np.asarray(mask).astype(bool) if mask is not None and alone else None
        self._objects[int(obj_id)] = _Object(int(obj_id), int(frame_index), prompts, given)

    def reset(self) -> None:
        """Forget the tracking state (references, memories, frame count); keep the objects' prompts."""
        for obj in self._objects.values():
            obj.reference = obj.memory = obj.pending = None
        self._next_index = 0
        self.predictor.reset_image()

    # ------------------------------------------------------------------ streaming
    def process(self, frame) -> FrameResult:
        """Segment the next frame of the stream: ``(H, W, 3)`` uint8 RGB -> :class:`FrameResult`.

        Pure streaming: an object appears from its reference frame on (frames before it do not hold it; use
        :meth:`run` for those). Objects may still be added for frames not yet processed.

        Raises:
            ImageError: not an image. PromptError: an object's prompts do not fit its reference frame or give
                an empty mask.
        """
        t = self._next_index
        result = self._forward(frame, t, {})
        self._next_index = t + 1
        return result

    def run(self, frames: Iterable) -> Iterator[tuple[int, FrameResult]]:
        """Segment a whole video: yields ``(frame_index, FrameResult)`` in frame order, every object in every frame.

        Starts from a clean state (:meth:`reset`). Frames before the latest reference frame ``K`` are buffered
        (at most ``K`` frames); objects are followed backwards from their reference frame over them, then
        everything streams forwards. A generator: nothing runs until iterated.

        Raises:
            PromptError: no object, a reference frame beyond the end of the video, bad prompts.
            ImageError: a frame is not an image.
        """
        if not self._objects:
            raise PromptError("no object to follow: call add_object(...) first")
        self.reset()
        it = iter(frames)
        last = max(o.frame_index for o in self._objects.values())
        prefix: list = []
        if last > 0:
            for frame in it:
                prefix.append(self._image(frame))
                if len(prefix) > last:
                    break
            if len(prefix) <= last:
                late = [o.obj_id for o in self._objects.values() if o.frame_index >= len(prefix)]
                raise PromptError(f"object(s) {late} are defined on frame {last}, but the video has {len(prefix)} frames "
                                  f"(indices 0..{len(prefix) - 1})")
            back = self._backward(prefix)
            for t in range(len(prefix)):
                frame, prefix[t] = prefix[t], None  # drop buffered frames as they are done
                extra, back[t] = back[t], {}
                result = self._forward(frame, t, extra)
                self._next_index = t + 1
                yield t, result
        for frame in it:
            t = self._next_index
            yield t, self.process(frame)
        if self._next_index == 0:
            raise PromptError("the video has no frames")

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _image(frame) -> np.ndarray:
        from seem.io import load_image

        if not isinstance(frame, np.ndarray):
            raise ImageError(f"a frame must be an (H, W, 3) uint8 numpy array, got {type(frame).__name__}")
        return load_image(frame)

    def _define(self, obj: _Object) -> tuple:
        """Predict ``obj`` from its prompts on the current image; set its reference tokens and memory seed."""
        pred = self.predictor.predict(obj.prompts)
        mask = obj.given_mask if obj.given_mask is not None else pred.masks[0]
        if not mask.any():
            raise PromptError(f"object {obj.obj_id}: its prompt segments nothing on frame {obj.frame_index}")
        obj.reference = reference_from_current(self.predictor, mask)
        obj.memory = pred.logits_lowres[:1]
        return mask, float(pred.scores[0]), pred.labels[0], pred.logits_lowres[:1]

    def _track(self, objs: list[_Object], memories: dict[int, torch.Tensor | None]) -> dict[int, tuple]:
        """Predict ``objs`` on the current image from their references (+ memory); ``{id: (mask, score, label, logits)}``."""
        out: dict[int, tuple] = {}
        expect = tuple(s // 4 for s in self.predictor.features.padded_size)
        for group in ([objs] if self.batch_objects else [[o] for o in objs]):
            refs: list[ReferencePrompt] = []
            for o in group:
                # only objects defined on an earlier frame are tracked, and _define set their reference
                assert o.reference is not None
                refs.append(o.reference)
            ref = concat_references(refs)
            mem = [memories.get(o.obj_id) for o in group] if self.mode == "memory" else [None]
            present = [m for m in mem if m is not None]
            # every object has a memory, of this frame's size (else: a new frame size)
            usable = len(present) == len(mem) and all(tuple(m.shape[-2:]) == expect for m in present)
            pred = self.predictor.predict(reference=ref, memory=torch.cat(present) if usable else None)
            for i, o in enumerate(group):
                out[o.obj_id] = (pred.masks[i], float(pred.scores[i]), pred.labels[i], pred.logits_lowres[i : i + 1])
        return out

    def _forward(self, frame, t: int, extra: dict[int, tuple]) -> FrameResult:
        img = self._image(frame)
        objs = [self._objects[i] for i in self.object_ids]
        here = [o for o in objs if o.frame_index == t]
        tracked = [o for o in objs if o.frame_index < t and o.reference is not None]
        results = dict(extra)
        if tracked or any(o.pending is None for o in here):
            self.predictor.set_image(img)
        for o in here:
            results[o.obj_id] = o.pending if o.pending is not None else self._define(o)
            o.pending = None
        if tracked:
            found = self._track(tracked, {o.obj_id: o.memory for o in tracked})
            for o in tracked:
                o.memory = found[o.obj_id][3]
            results.update(found)
        return _result(t, img.shape[:2], results)

    def _backward(self, prefix: list[np.ndarray]) -> list[dict[int, tuple]]:
        """Reference frames of ``prefix`` first (ascending), then objects followed back from them to frame 0."""
        objs = [self._objects[i] for i in self.object_ids]
        for k in sorted({o.frame_index for o in objs}):
            self.predictor.set_image(prefix[k])
            for o in objs:
                if o.frame_index == k:
                    o.pending = self._define(o)
        memories = {o.obj_id: o.memory for o in objs}
        back: list[dict[int, tuple]] = [{} for _ in prefix]
        for t in range(len(prefix) - 2, -1, -1):
            later = [o for o in objs if o.frame_index > t]
            if later:
                self.predictor.set_image(prefix[t])
                back[t] = self._track(later, memories)
                memories.update({i: r[3] for i, r in back[t].items()})
        return back


def _result(t: int, size: tuple[int, int], results: dict[int, tuple]) -> FrameResult:
    ids = sorted(results)
    return FrameResult(t, (int(size[0]), int(size[1])), {i: np.asarray(results[i][0], dtype=bool) for i in ids},
                       {i: results[i][1] for i in ids}, {i: results[i][2] for i in ids})
