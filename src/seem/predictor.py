"""``SeemPredictor``: encode an image once, then answer many prompts cheaply (SAM-style API).

Coordinates are pixels of the original image: points (x, y), boxes XYXY. Masks come back at the original
size. See :mod:`seem.prompts` for how each prompt type reaches the model.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from seem.automatic import EverythingConfig
from seem.candidates import Candidates, clicks_only, pick, spatial_candidates, visual_scorer
from seem.configs import SPATIAL_QUERY_MODES
from seem.errors import ImageError, PromptError
from seem.everything import segment_everything
from seem.find import FindConfig, find_instances, instances_prediction
from seem.grounding_choice import grounded_text
from seem.modeling.precision import decoding_copy, encoding_copy
from seem.modeling.seem import ImageFeatures, Seem
from seem.modeling.visual_sampler import PromptSampler, RandomSampler
from seem.postprocess import masks_with_scores, select_visual_queries
from seem.prompt_round import decode_round, round_logits
from seem.prompts import Prompts, ReferencePrompt, checks, mask_regions
from seem.structures import FindResult, Prediction
from seem.transforms import ImageFrame, plan_frame, preprocess_image
from seem.vocab_cache import VocabularyCache, default_vocabulary_cache_dir

PRECISIONS = ("fp32", "bf16", "bf16-all", "int8")


class SeemPredictor:
    """Holds one image's features and answers prompts against them.

    Args:
        model: a built :class:`Seem` (weights loaded).
        vocabulary: label space for the ``labels`` of every mask (default: the 133 COCO panoptic classes).
        shorter_side / max_size: resize of the image's shorter side before encoding (default from the
            model config: 512 / 1024, the official demo and RefCOCO settings); ``None`` keeps the size.
        seed: seeds the sampler of prompt pixels and spatial queries, so results are reproducible.
        sampler: inject a :class:`PromptSampler` (e.g. a ``RecordedSampler``) instead of ``seed``.
        vocabulary_cache_dir: where vocabulary embeddings persist between processes (default
            ``~/.cache/seem/vocab``, see :mod:`seem.vocab_cache`); ``None`` keeps them in memory only.
        precision: ``"fp32"`` (default, the official numerics), ``"bf16"`` (bf16 image encoder), ``"bf16-all"``
            (bf16 decoder too) or ``"int8"`` (int8 decoder weights, bf16 image cache); what each computes in
            which dtype, and how closely its masks agree with fp32: :mod:`seem.modeling.precision`.

    Raises:
        TypeError: ``model`` is not a built :class:`Seem`.
        ValueError: an unknown ``precision``.
    """

    def __init__(self, model: Seem, vocabulary: Sequence[str] | None = None, *,
                 shorter_side: int | Literal["config"] | None = "config",
                 max_size: int | Literal["config"] | None = "config", seed: int = 0, sampler: PromptSampler | None = None,
                 vocabulary_cache_dir: str | None = "default", precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self._dtype = torch.bfloat16 if precision == "bf16-all" else torch.float32  # the decoder's dtype
        # the per-image cache's dtype (int8: bf16 image keys/values and mask features, fp32 activations)
        self._cache_dtype = torch.bfloat16 if precision in ("bf16-all", "int8") else torch.float32
        self._decoding_model: Seem | None = None
        self._encoding_model: Seem | None = None
        if not isinstance(model, Seem):
            raise TypeError(f"SeemPredictor needs a built Seem model, got {type(model).__name__}; "
                            "use SeemPredictor.from_pretrained(name_or_path) for a name or a checkpoint path")
        self.model = model.eval()
        cfg = model.config
        self.shorter_side = cfg.test_shorter_side if shorter_side == "config" else shorter_side
        self.max_size = cfg.test_max_size if max_size == "config" else max_size
        self.seed = seed
        self._sampler = sampler
        cache_dir = default_vocabulary_cache_dir() if vocabulary_cache_dir == "default" else vocabulary_cache_dir
        self.vocabularies = VocabularyCache(model, directory=cache_dir)
        if vocabulary is None and cfg.default_vocabulary:
            vocabulary = cfg.default_vocabulary
        elif vocabulary is None:
            from seem.vocabularies import COCO_PANOPTIC_CLASSES, display_name

            vocabulary = [display_name(c) for c in COCO_PANOPTIC_CLASSES]
        self.set_vocabulary(vocabulary)
        self.reset_image()

    @classmethod
    def from_pretrained(cls, name_or_path: str | None = None, device: str = "cpu", **kwargs) -> SeemPredictor:
        """A predictor for a registry name or checkpoint path (see :func:`seem.from_pretrained`)."""
        from seem.hub import from_pretrained

        return cls(from_pretrained(name_or_path, device=device), **kwargs)

    # ------------------------------------------------------------------ state
    @property
    def device(self) -> torch.device:
        return self.model.pixel_mean.device

    @property
    def decoding_model(self) -> Seem:
        """The model the decoder runs on: ``model`` itself in fp32 and bf16; in bf16-all (int8) a :class:`Seem`
        sharing ``model``'s encoders with a bfloat16 (int8, :func:`~seem.modeling.int8.quantize_decoder`) copy of
        its decoder, made on first use: later changes to ``model``'s decoder weights are not seen by it."""
        if self.precision in ("fp32", "bf16"):
            return self.model
        if self._decoding_model is None:
            self._decoding_model = decoding_copy(self.model, self.precision)
        return self._decoding_model

    @property
    def encoding_model(self) -> Seem:
        """The model images are encoded with, made on first use (:func:`~seem.modeling.precision.encoding_copy`):
        ``model``'s weights with Winograd 3x3 convs in the pixel decoder; in the bf16 modes (unless the backbone
        is fp32-only: MobileNetV2, EfficientNet-Lite) bf16 copies of the encoder's weights: what autocast computes (up to float
        rounding), without casting the weights for every image."""
        if self._encoding_model is None:
            m = self.model
            bf16 = self.precision in ("bf16", "bf16-all") and getattr(m.backbone, "supports_bf16", True)
            self._encoding_model = encoding_copy(m, torch.bfloat16 if bf16 else torch.float32)
        return self._encoding_model

    def autocast(self, decoder: bool = False):
        """The precision context of the image encoder (``decoder=False``) or of decoder calls: bf16 autocast,
        or nothing for fp32."""
        if self.precision == "bf16-all" or (self.precision == "bf16" and not decoder):
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def sampler(self) -> PromptSampler:
        """The sampler for one call: the injected one, or a fresh generator seeded with ``seed``."""
        return self._sampler if self._sampler is not None else RandomSampler(self.seed)

    def set_vocabulary(self, names: Sequence[str]) -> None:
        """Label space for ``Prediction.labels`` (its embeddings are computed once and cached)."""
        from seem.vocabularies import check_vocabulary

        self.vocabulary = check_vocabulary(names)

    def reset_image(self) -> None:
        """Forget the current image and its features."""
        self.image: np.ndarray | None = None
        self.frame: ImageFrame | None = None
        self.features: ImageFeatures | None = None
        # the object queries' last-layer (class_embed, masks) on this image (seem.everything)
        self._everything: tuple[Tensor, Tensor] | None = None

    @torch.inference_mode()
    def encode(self, image, *, decoder_cache: bool = True) -> tuple[ImageFrame, ImageFeatures]:
        """Load/validate an image and run the image encoder on it (does not change the current image).

        ``decoder_cache=False`` skips the decoder's per-image cache (:meth:`Seem.cache_features`), which only
        decoding on this image needs (not sampling reference tokens from it).

        Raises:
            seem.errors.ImageError: unreadable, empty, corrupt or too large (> 50 MP) images.
        """
        from seem.io import is_rgb_uint8, load_image

        img = image if is_rgb_uint8(image) else load_image(image)
        frame = plan_frame(img.shape[:2], self.shorter_side, self.max_size, self.model.config.size_divisibility)
        x = preprocess_image(img, frame, self.model.pixel_mean, self.model.pixel_std).to(self.device)
        with self.autocast():
            features = self.encoding_model.encode_image(x)
            if self.precision == "int8":  # the cache from the fp32 weights, stored in bf16 (see the class doc)
                features = self.model.cache_features(features) if decoder_cache else features
                return frame, features.with_cache_dtype(self._cache_dtype)
            # mask features in the cache's dtype: fp32 in fp32 / bf16 (mask logits keep fp32 precision), bf16 in
            # bf16-all (a click's mask logits read 46 MB of fp32 features at Focal-T, 512 px: half of that). The
            # cache resizes them to each level: bf16 ones fastest from the encoder's channels-last map (before the
            # row-major copy), fp32 ones from the row-major copy the rounds keep anyway
            if decoder_cache and features.mask_features.dtype == self._cache_dtype == torch.bfloat16:
                features = features.with_level_dtype(self._dtype)  # keys as a decode without the cache makes them
            else:
                features = features.to(self._dtype, self._cache_dtype)
            if decoder_cache:
                features = self.decoding_model.cache_features(features, level_dtype=self._dtype)
        return frame, features.to(self._dtype, self._cache_dtype)

    def set_image(self, image) -> None:
        """Encode ``image`` once: ``(H, W, 3)`` uint8 RGB array, PIL image, path or bytes.

        Raises:
            seem.errors.ImageError: unreadable, empty, corrupt or too large (> 50 MP) images.
        """
        from seem.io import load_image

        img = load_image(image)
        frame, features = self.encode(img)  # already an (H, W, 3) uint8 array: not decoded again
        self.reset_image()
        self.frame, self.features, self.image = frame, features, img

    def with_image(self, frame: ImageFrame, features: ImageFeatures, image: np.ndarray | None = None) -> SeemPredictor:
        """A view of this predictor on an already encoded image (``frame, features = encode(image)``).

        Cheap: a shallow copy (``copy.copy``) that shares the model, its bf16 decoder copy, the settings and
        the vocabulary cache; only ``frame``, ``features`` and ``image`` (the ``(H, W, 3)`` uint8 original,
        optional) are its own, and ``segment_everything``'s per-image state starts empty. ``self`` is not
        changed. Thread-safe to use one view per request/thread (a server's pattern), provided the shared
        :attr:`vocabularies` cache is guarded by the caller (it is a plain LRU dict) and the bf16 copies were
        made before (touch :attr:`decoding_model` and :attr:`encoding_model` once).
        """
        view = copy.copy(self)
        view.frame, view.features, view.image = frame, features, image
        view._everything = None
        return view

    def _require_image(self) -> tuple[ImageFrame, ImageFeatures]:
        if self.features is None or self.frame is None:
            raise ImageError("no image is set: call set_image(image) first")
        return self.frame, self.features

    # ------------------------------------------------------------------ prompts
    @torch.inference_mode()
    def encode_reference(self, image, region) -> ReferencePrompt:
        """Prompt tokens for a region of ``image`` (``(H, W)`` bool mask, or ``(K, H, W)`` for K objects).

        The tokens are sampled on the reference image's features (official demo ``evaluate_referring_image``)
        and can then be decoded against any image set later.

        Raises:
            PromptError: ``region`` missing, not 2-D / 3-D arrays, empty or of another size than ``image``
                (the form is checked before the image is encoded). ImageError: an unreadable image.
        """
        if region is None:
            raise PromptError("region is None: encode_reference needs an (H, W) or (K, H, W) mask of the image")
        try:
            region = np.asarray(region)
        except (TypeError, ValueError):
            raise PromptError(f"region must be an (H, W) or (K, H, W) mask, got {type(region).__name__}") from None
        checks.region_list(region, "region")  # the form, before paying for the image encoder
        frame, feats = self.encode(image, decoder_cache=False)  # only tokens are sampled on this image
        return self.with_image(frame, feats).reference_from_current(region)

    @torch.inference_mode()
    def reference_from_current(self, region) -> ReferencePrompt:
        """Prompt tokens for a region of the image already set (``(H, W)`` bool, or ``(K, H, W)``), sampled on its
        cached features: :meth:`encode_reference` without running the image encoder again (video frames, a
        server's cached uploads).

        Raises:
            ImageError: no image set. PromptError: an empty or wrongly sized region.
        """
        frame, feats = self._require_image()
        regions = mask_regions(np.asarray(region), frame, "region")
        return ReferencePrompt(self.decoding_model.encode_visual_prompt(
            feats, regions.positive.to(self.device), regions.negative.to(self.device), self.sampler()))

    @torch.inference_mode()
    def predict(self, prompts: Prompts | str | Sequence[str] | None = None, points=None, point_labels=None,
                boxes=None, scribbles=None, polygons=None, masks=None, reference: ReferencePrompt | None = None,
                memory: Prediction | Tensor | None = None, joint_prompts: bool = True, *,
                text: str | Sequence[str] | None = None, all_instances: bool = False,
                click_fit: bool | None = None, candidate_scorer: bool | None = None,
                spatial_queries: str | None = None) -> Prediction:
        """Segment the current image from any mix of prompts: ``predict(Prompts(...))``, or the same fields as
        keywords (``predict(points=..., text=...)`` builds the :class:`Prompts` and takes the same path).

        Args:
            prompts: a :class:`Prompts` (original-image pixels; see its fields), or, as a shorthand, the text
                (a phrase or a list of phrases), so ``predict("the dog")`` reads like ``predict(text="the dog")``.
            points, point_labels, boxes, scribbles, polygons, masks, reference, text: the fields of
                :class:`Prompts`, when ``prompts`` is not one: ``points`` ``(N, 2)`` (x, y) clicks of one object
                or ``(K, N, 2)`` for K objects; ``point_labels`` ``(N,)`` / ``(K, N)`` 1 = positive, 0 = negative;
                ``boxes`` ``(K, 4)`` XYXY; ``scribbles`` / ``polygons`` lists of ``(H, W)`` masks or ``(M, 2)``
                points; ``masks`` ``(K, H, W)`` bool; ``text`` a phrase or a list (one object each);
                ``reference`` from :meth:`encode_reference` (its objects follow the others).
            memory: the previous round's :class:`Prediction` (or its ``logits_lowres``, ``(K, H_pad/4, W_pad/4)``
                float) for the same visual objects: the mask-guided memory prompt of multi-round interaction.
                Pass the accumulated clicks of all rounds together with it (and a box again: with the model's
                ``InferenceConfig.box_anchor`` it then bounds the mask and an anchor click stands in for it).
            joint_prompts: with text *and* visual prompts, the visual objects' queries also read the text
                tokens: the paper's zero-shot composition ("learnable queries can freely interact with all
                prompts at inference time", §3.1). ``False`` reproduces the official v1 code exactly: its
                attention table sends the two prompt types to separate query groups, so the text does not
                change the visual masks. No effect without both prompt types.
            all_instances: one text phrase alone -> every instance of it (:meth:`find`, default thresholds), not
                the one referred object: K >= 0 masks labelled with the phrase, their object queries' logits.
            click_fit: fit each object's mask to its clicks (:mod:`seem.click_fit`); None: the model's
                ``InferenceConfig.click_fit`` (on for ``seem_tiny``).
            candidate_scorer: pick each object's spatial query by the model's learned scorer (:mod:`seem.candidates`)
                rather than Eq. 5: the candidate scorer in a click-fitted round of clicks alone without ``memory``, the
                refine scorer in one with ``memory``, the box scorer in a round of boxes alone without ``memory``;
                None: the model's ``InferenceConfig.candidate_scorer``; no effect without one.
            spatial_queries: ``"sampled"`` or ``"all"`` object queries as each visual object's candidates (see
                ``InferenceConfig.spatial_queries``); None: the model's (``"all"`` for ``seem_tiny``).

        Returns:
            :class:`Prediction` with one mask per object, ``(K, H, W)`` bool at the original size (visual objects
            first, then one per text phrase when there is no visual prompt). With text *and* visual prompts,
            both enter one decoder pass and the mask of each visual object is chosen among its spatial queries
            by mask-embedding match (official ``evaluate_interactive_grounding``); see ``joint_prompts``.

        Raises:
            PromptError: no prompt, malformed or out-of-image prompts (naming the field), a text longer than
                77 tokens, a bad ``memory``, a :class:`Prompts` together with prompt keywords.
            PromptTypeError (a PromptError and a TypeError): ``all_instances``, ``click_fit`` or
                ``candidate_scorer`` not a bool. PromptError: ``spatial_queries`` not one of the two modes.
            ImageError: no image set.
        """
        fields = dict(points=points, point_labels=point_labels, boxes=boxes, scribbles=scribbles,
                      polygons=polygons, masks=masks, reference=reference)
        if isinstance(prompts, Prompts):
            if text is not None or any(v is not None for v in fields.values()):
                raise PromptError("pass prompts either as one Prompts or as keyword arguments, not both")
        else:
            if prompts is not None and text is not None:
                raise PromptError("text given twice: as the first argument and as text=")
            prompts = Prompts(text=prompts if text is None else text, **fields)
        if checks.flag(all_instances, "all_instances"):
            if prompts.has_visual or memory is not None or not prompts.text or len(prompts.text) != 1:
                raise PromptError("all_instances=True takes exactly one text phrase alone; find([...]) several")
            return instances_prediction(self, prompts.text[0])
        if spatial_queries is not None and spatial_queries not in SPATIAL_QUERY_MODES:
            raise PromptError(f"spatial_queries must be one of {SPATIAL_QUERY_MODES}, got {spatial_queries!r}")
        return self._predict(prompts, memory, joint_prompts, None if click_fit is None else checks.flag(click_fit, "click_fit"),
                             None if candidate_scorer is None else checks.flag(candidate_scorer, "candidate_scorer"),
                             spatial_queries)

    @torch.inference_mode()
    def click_candidates(self, prompts: Prompts, memory: Prediction | Tensor | None = None) -> Candidates:
        """Every spatial-query candidate of a click round on the image set, each post-processed as :meth:`predict`
        returns a mask (click fit, prompt-connected masks): what the model's candidate scorer ranks
        (:mod:`seem.candidates`; the data :mod:`seem.train.candidate_scorer` trains it on). ``PromptError``:
        ``prompts`` not a :class:`Prompts` of clicks alone, and as :meth:`predict`; ``ImageError``: no image."""
        if not isinstance(prompts, Prompts) or not clicks_only(prompts):
            raise PromptError("click_candidates takes a Prompts of clicks alone (points and point_labels, no text)")
        frame, feats = self._require_image()
        run = decode_round(self, prompts, memory, joint_prompts=True)
        inference = self.model.config.inference
        return spatial_candidates(run.out, feats, self.decoding_model.decoder, prompts, frame, run.positive,
                                  inference, inference.click_fit, memory=run.memory)

    def _predict(self, prompts: Prompts, memory, joint_prompts: bool, click_fit: bool | None = None,
                 candidate_scorer: bool | None = None, spatial_queries: str | None = None) -> Prediction:
        frame, feats = self._require_image()
        run = decode_round(self, prompts, memory, joint_prompts, spatial_queries)
        out, positive, visual, prompts = run.out, run.positive, run.out.visual, run.prompts
        last, inference = out.last, self.model.config.inference
        fit = visual is not None and prompts.points is not None and (inference.click_fit if click_fit is None else click_fit)
        scored = inference.candidate_scorer if candidate_scorer is None else candidate_scorer
        # fp32 modules the reduced-precision copies share, trained on click-fitted clicks and on boxes
        scorer = visual_scorer(self.model, prompts, memory, fit, run.bound is not None) if visual is not None and scored else None
        if visual is not None and scorer is not None:
            cands = spatial_candidates(out, feats, self.decoding_model.decoder, prompts, frame, positive, inference, fit,
                                       run.bound, run.memory)
            chosen, logits, support = cands.take(pick(scorer, cands, visual.num_objects, frame))
            return self._prediction(frame, logits, last.class_embed[0, chosen].float(), "bicubic", False, support)
        if visual is not None:  # official evaluate_interactive_single: Eq. 5, bicubic masks
            chosen = select_visual_queries(out)
        else:  # no visual prompt: the check above leaves only a text one
            chosen, logits = grounded_text(self, run)
            return self._prediction(frame, logits, last.class_embed[0, chosen].float(), "bilinear", True)  # official
        logits, support = round_logits(last.mask_embed[:, chosen], feats, self.decoding_model.decoder, prompts, frame,
                                       positive, inference, fit, bound=run.bound)
        return self._prediction(frame, logits, last.class_embed[0, chosen].float(), "bicubic", False, support)

    def _prediction(self, frame: ImageFrame, logits_lowres: Tensor, class_embed: Tensor, mode: str,
                    antialias: bool, support: Tensor | None = None) -> Prediction:
        masks, mask_score = masks_with_scores(frame, logits_lowres, mode, antialias, support)
        # label ids over the vocabulary and their probability (softmax with "background")
        emb = self.vocabularies.get(self.vocabulary + ("background",))
        p, ids = F.softmax(self.model.class_logits(class_embed, emb.to(class_embed)), dim=-1)[:, :-1].max(dim=-1)
        return Prediction(
            masks=masks.cpu().numpy(),
            scores=(p * mask_score).float().cpu().numpy(),
            labels=[self.vocabulary[i] for i in ids.tolist()],
            label_ids=ids.cpu().numpy().astype(np.int64),
            logits_lowres=logits_lowres.float().cpu(),
            vocabulary=self.vocabulary,
        )

    # ------------------------------------------------------------------ find / segment everything
    @torch.inference_mode()
    def find(self, texts: str | Sequence[str], *, score_threshold: float = 0.3, nms_threshold: float = 0.5,
             max_instances: int = 100, context: Sequence[str] | str | None = "vocabulary") -> FindResult:
        """Every instance of each phrase (``"car"`` or ``["car", "person"]``) from one decoder pass
        (:func:`seem.find.find_instances`): a :class:`FindResult`, one group per phrase (masks ``(N, H, W)`` bool,
        original size; scores ``(N,)``; boxes ``(N, 4)`` XYXY pixels). ``PromptError``: no / blank / duplicate
        phrases, thresholds outside [0, 1] or NaN; ``PromptTypeError`` (also a ``TypeError``): ``texts`` not a str /
        list / tuple of str, a threshold not a number, ``max_instances`` not an integer; ``ImageError``: no image."""
        return find_instances(self, texts, FindConfig(score_threshold, nms_threshold, max_instances), context)

    @torch.inference_mode()
    def segment_everything(self, vocabulary: Sequence[str] | None = None, kind: str = "panoptic",
                           thing_classes: Sequence[str] | None = None,
                           config: EverythingConfig | Mapping[str, Any] | None = None, *,
                           text_grounding: bool = False):
        """Open-vocabulary panoptic / semantic / instance segmentation, or ``kind="everything"`` (class-agnostic
        masks of every region; ``config``: an :class:`seem.automatic.EverythingConfig` or a mapping of its fields;
        ``text_grounding``: semantic maps helped by each name's grounded mask, :mod:`seem.grounded_semantic`):
        :func:`seem.everything.segment_everything` (original size; ``PromptError``: bad vocabulary / kind / config
        values, a config or text_grounding with another kind; ``PromptTypeError``: a config or field of the wrong
        type; ``ImageError``)."""
        return segment_everything(self, vocabulary, kind, thing_classes, config, text_grounding)
