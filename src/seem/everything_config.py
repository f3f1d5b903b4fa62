"""Settings of everything mode (:mod:`seem.automatic`; ``segment_everything(kind="everything", config=...)``)."""

from __future__ import annotations

from dataclasses import dataclass

from seem.errors import PromptError, PromptTypeError
from seem.prompts.checks import flag
from seem.setting_checks import number_fields

POINT_DECODINGS = ("click", "sampled")


@dataclass(frozen=True)
class EverythingConfig:
    """Settings of everything mode (names and meaning as SAM's ``SamAutomaticMaskGenerator`` where shared).

    Attributes:
        points_per_side: the grid is ``n x n`` points over the image (SAM: 32; 16 keeps a CPU call to seconds).
        points_per_batch: grid points decoded together, one object each, in one decoder pass (two with
            ``point_decoding="click"`` on a model whose clicks decode otherwise).
        query_threshold: an object query is a candidate when its objectness, 1 - p(background) over the
            vocabulary + "background", is above this (class-agnostic: the probability mass of all names).
        score_threshold: keep masks whose score (mean mask probability inside x stability) is at least this
            (SAM's ``pred_iou_thresh`` plays this role).
        stability_threshold / stability_offset: SAM's ``stability_score_thresh`` / ``stability_score_offset``.
        nms_threshold: mask IoU above which the lower-scored of two masks is dropped (SAM's ``box_nms_thresh``).
        min_area: drop masks smaller than this many pixels of the original image.
        max_masks: at most this many masks, best first.
        max_candidate_bytes: memory for the original-size candidate masks held before the final NMS. Past it
            the candidates are reduced as they come (mask NMS, then the best that fit), which bounds memory on
            large images and dense grids; a single NMS over all candidates can keep a few other masks. With
            crop layers it bounds the candidates of all crops together (those of the crop being decoded get
            what the others leave, at least one mask).
        crop_n_layers: SAM's crop layers (:mod:`seem.crops`): 0 (default) decodes the whole image only; layer
            ``i`` in ``1..crop_n_layers`` also splits it into ``2^i x 2^i`` overlapping crops, each encoded as an
            image of its own (zooming in on small objects) and decoded as the whole image is (object queries,
            then grid points). At most 3 (64 crops).
        crop_overlap_ratio: overlap of neighbouring layer-1 crops as a fraction of the image's shorter side
            (halved at each deeper layer); SAM: 512 / 1500. In ``[0, 1)``.
        crop_n_points_downscale_factor: layer ``i`` prompts ``points_per_side // factor^i`` points a side
            (at least 1); SAM: 1.
        point_decoding: how a grid point is decoded. Both first decode it by Eq. 5 over the official sampled
            spatial queries, without the model's learned parts. ``"sampled"`` keeps that mask. ``"click"``
            (default) decodes the points inside their mask again as ``predict`` decodes a user's click, with the
            model's settings (spatial queries, candidate scorer, click fit, prompt-connected masks: for
            ``seem_tiny`` its 24 candidates and learned scorer; the official models' clicks are the first decode),
            and keeps that; the other points keep the first mask. On a black image the first masks are specks away
            from their points, so no point is fitted a blob there.
        skip_covered_points: decode a grid point only where no kept object-query mask lies (faster; the queries'
            masks then hide what they merge, e.g. several people in one mask). ``False`` (default) decodes every
            grid point, as SAM does.
        click_fit: ``point_decoding="sampled"`` only: a grid point whose mask has pixels but leaves the point
            outside is decoded again with its mask fitted to the click as a user's click is (:mod:`seem.click_fit`,
            only where the model enables it); a point whose mask is empty stays without one. On featureless
            regions (a black image, letterbox bands) a fit can draw a blob that the image does not show.

    Raises:
        PromptTypeError (a PromptError and a TypeError): an ``int`` field that is not an integer (``2.5``,
            ``True``; NumPy integers are fine) or a ``float`` field that is not a real number (``"0.3"``).
        PromptError: NaN, an infinity or a value outside its range, naming the field; a ``point_decoding`` other
            than ``"click"`` / ``"sampled"`` (not a string: PromptTypeError); ``click_fit`` without
            ``point_decoding="sampled"``.
    """

    points_per_side: int = 16
    points_per_batch: int = 32
    query_threshold: float = 0.5
    score_threshold: float = 0.15
    stability_threshold: float = 0.3
    stability_offset: float = 1.0
    nms_threshold: float = 0.7
    min_area: int = 16
    max_masks: int = 256
    max_candidate_bytes: int = 1 << 30
    crop_n_layers: int = 0
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    point_decoding: str = "click"
    skip_covered_points: bool = False
    click_fit: bool = False

    def __post_init__(self) -> None:
        number_fields(self)  # types first (stored as int / float), then the ranges
        object.__setattr__(self, "click_fit", flag(self.click_fit, "click_fit"))
        object.__setattr__(self, "skip_covered_points", flag(self.skip_covered_points, "skip_covered_points"))
        if not isinstance(self.point_decoding, str):
            raise PromptTypeError(f"point_decoding must be a string, one of {POINT_DECODINGS}, got "
                                  f"{self.point_decoding!r:.60} ({type(self.point_decoding).__name__})")
        object.__setattr__(self, "point_decoding", str(self.point_decoding))  # a NumPy string as a str
        if self.point_decoding not in POINT_DECODINGS:
            raise PromptError(f"point_decoding must be one of {POINT_DECODINGS}, got {self.point_decoding!r}")
        if self.click_fit and self.point_decoding != "sampled":
            raise PromptError("click_fit applies to point_decoding='sampled' (point_decoding='click' fits the points "
                              "as the model fits a user's clicks)")
        if not 1 <= self.points_per_side <= 64:
            raise PromptError(f"points_per_side must lie in [1, 64], got {self.points_per_side}")
        if not 1 <= self.points_per_batch <= 256:
            raise PromptError(f"points_per_batch must lie in [1, 256], got {self.points_per_batch}")
        for name in ("query_threshold", "score_threshold", "stability_threshold", "nms_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise PromptError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        for name, least in (("stability_offset", 0), ("min_area", 0), ("max_masks", 1), ("max_candidate_bytes", 1),
                            ("crop_n_points_downscale_factor", 1)):
            if getattr(self, name) < least:
                raise PromptError(f"{name} must be >= {least}, got {getattr(self, name)}")
        if not 0 <= self.crop_n_layers <= 3:
            raise PromptError(f"crop_n_layers must lie in [0, 3], got {self.crop_n_layers}")
        if not 0.0 <= self.crop_overlap_ratio < 1.0:
            raise PromptError(f"crop_overlap_ratio must lie in [0, 1), got {self.crop_overlap_ratio}")
