"""Request and response models of the HTTP API (pydantic v2; they make the OpenAPI schema at ``/docs``).

Coordinates are pixels of the *original* uploaded image, continuous COCO convention: x to the right, y down,
pixel ``(col, row)`` covers ``[col, col + 1) x [row, row + 1)``; a point is ``[x, y]``, a box ``[x0, y0, x1, y1]``
(XYXY), an output ``bbox`` is COCO ``[x, y, width, height]``. Masks travel as COCO RLE ``{"size": [H, W],
"counts": str}`` (column-major, :func:`seem.io.mask_to_rle`) and polygons as COCO flat lists
``[x0, y0, x1, y1, ...]``. Whether points lie inside the image is checked by the routes (it needs the image
size): a point outside gives 422 naming the field. Unknown fields are rejected (422), so a typo such as
``"boxes"`` in a session round does not silently do nothing.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

MAX_POINTS = 512  # clicks in one request / round
MAX_VERTICES = 10_000  # per polygon or scribble polyline
MAX_SHAPES = 64  # boxes, scribbles, polygons, masks or text phrases in one request
MAX_OBJECTS = 64  # objects of one session
MAX_TEXT_CHARS = 2_000  # cheap pre-check; the model's limit (77 tokens) is checked by the tokenizer
MAX_VOCABULARY = 256  # class names of one panoptic request (per-class score maps are C x H x W)
MAX_GROUNDED_NAMES = 32  # text_grounding: one decoder text round per name, so the request time grows with them
MAX_TOTAL_VERTICES = 4_000  # scribble + polygon vertices of one request (rasterising costs vertices x rows)
MAX_NAME_CHARS = 200
# all names of one vocabulary together: text encoding time grows with tokens (COCO's 133 names: 1,034 chars)
MAX_VOCABULARY_CHARS = 8_000

Coord = Annotated[float, Field(allow_inf_nan=False)]
Point = Annotated[list[Coord], Field(min_length=2, max_length=2, description="[x, y] pixels of the original image")]
Box = Annotated[list[Coord], Field(min_length=4, max_length=4, description="[x0, y0, x1, y1] pixels (XYXY)")]
Polyline = Annotated[list[Point], Field(min_length=1, max_length=MAX_VERTICES,
                                        description="scribble stroke: [[x, y], ...], drawn 3 px wide")]
Polygon = Annotated[list[Point], Field(min_length=3, max_length=MAX_VERTICES, description="[[x, y], ...] vertices, filled")]
PointLabel = Annotated[int, Field(ge=0, le=1, description="1 = positive (on the object), 0 = negative")]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]
ImageId = Annotated[str, Field(min_length=1, max_length=128, description="id returned by POST /v1/images")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RLE(_Strict):
    """COCO run-length encoding of an ``(H, W)`` mask: compressed ``counts`` string, or a list of run lengths."""

    size: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=2, max_length=2, description="[H, W]")]
    counts: str | list[Annotated[int, Field(ge=0)]]


class Reference(_Strict):
    """A region of another uploaded image (the "referred region" prompt): exactly one of ``mask`` or
    ``polygon`` (422 otherwise)."""

    image_id: ImageId
    mask: RLE | None = None
    polygon: Polygon | None = None

    @model_validator(mode="after")
    def _one_region(self):
        if (self.mask is None) == (self.polygon is None):
            raise ValueError("reference: give exactly one of mask (RLE) or polygon")
        return self


def _labels_match(points, labels, what: str) -> None:
    if labels is not None and (points is None or len(labels) != len(points)):
        n = 0 if points is None else len(points)
        raise ValueError(f"point_labels: {what} has {n} points but {len(labels)} point_labels (one 1/0 per point)")


# ---------------------------------------------------------------------------------------------- requests
class ImageUpload(_Strict):
    """JSON alternative to the multipart upload: the encoded file (PNG, JPEG, ...) as base64 (a
    ``data:image/...;base64,`` prefix is accepted)."""

    data: Annotated[str, Field(min_length=1, description="standard base64 (RFC 4648, padded) of the file's bytes, "
                               "optionally after a data:image/...;base64, prefix; 422 when it does not decode")]


class SessionCreate(_Strict):
    image_id: ImageId


class PromptRound(_Strict):
    """One interaction round on one object of a session. Every field but ``object``/``new_object`` adds to
    the object's prompts: ``points``, ``scribble`` strokes, ``polygon`` and ``mask`` regions accumulate over
    rounds; ``box``, ``text`` and ``reference`` replace the previous one."""

    object: Annotated[int, Field(ge=0, lt=MAX_OBJECTS)] | None = Field(
        None, description="index of the object to refine (default: the current object)")
    new_object: bool = Field(False, description="start a new object (its index is the number of objects so far)")
    points: Annotated[list[Point], Field(min_length=1, max_length=MAX_POINTS)] | None = None
    point_labels: Annotated[list[PointLabel], Field(max_length=MAX_POINTS)] | None = Field(
        None, description="one 1/0 per point, as many as points (422 otherwise; default: all 1)")
    box: Box | None = None
    scribble: Annotated[list[Polyline], Field(min_length=1, max_length=MAX_SHAPES)] | None = Field(
        None, description="strokes of this object: a list of polylines [[x, y], ...]")
    polygon: Polygon | None = None
    mask: RLE | None = None
    text: Text | None = None
    reference: Reference | None = None

    @model_validator(mode="after")
    def _check(self):
        _labels_match(self.points, self.point_labels, "points")
        _check_vertices(self.scribble, [self.polygon] if self.polygon else None)
        if self.new_object and self.object is not None:
            raise ValueError("object: give either object (an existing index) or new_object: true, not both")
        if all(getattr(self, f) is None for f in ("points", "box", "scribble", "polygon", "mask", "text", "reference")):
            raise ValueError("no prompt given: send points, box, scribble, polygon, mask, text or reference")
        return self


def _check_vertices(*groups) -> None:
    total = sum(len(line) for group in groups if group for line in group)
    if total > MAX_TOTAL_VERTICES:
        raise ValueError(f"scribble/polygon: {total} vertices in one request, at most {MAX_TOTAL_VERTICES}")


class PredictRequest(_Strict):
    """Stateless prediction, the arguments of :meth:`seem.SeemPredictor.predict`: all ``points`` are the
    clicks of one object; each box / scribble / polygon / mask is one object (several prompt types then
    describe the same objects, their counts must agree); ``text`` is one phrase or one per object."""

    image_id: ImageId
    points: Annotated[list[Point], Field(min_length=1, max_length=MAX_POINTS)] | None = None
    point_labels: Annotated[list[PointLabel], Field(max_length=MAX_POINTS)] | None = Field(
        None, description="one 1/0 per point, as many as points (422 otherwise; default: all 1)")
    boxes: Annotated[list[Box], Field(min_length=1, max_length=MAX_SHAPES)] | None = None
    scribbles: Annotated[list[Polyline], Field(min_length=1, max_length=MAX_SHAPES)] | None = None
    polygons: Annotated[list[Polygon], Field(min_length=1, max_length=MAX_SHAPES)] | None = None
    masks: Annotated[list[RLE], Field(min_length=1, max_length=MAX_SHAPES)] | None = None
    text: Text | Annotated[list[Text], Field(min_length=1, max_length=MAX_SHAPES)] | None = None
    reference: Reference | None = None
    joint_prompts: bool = Field(True, description="text and visual prompts read each other (False: official v1)")

    @model_validator(mode="after")
    def _check(self):
        _labels_match(self.points, self.point_labels, "points")
        _check_vertices(self.scribbles, self.polygons)
        return self


class PanopticRequest(_Strict):
    image_id: ImageId
    vocabulary: Literal["coco"] | Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]],
                                            Field(min_length=1, max_length=MAX_VOCABULARY)] | None = Field(
        None, description='class names, or "coco" for the 133 COCO panoptic classes (default: the model\'s)')
    kind: Literal["panoptic", "semantic", "instance"] = "panoptic"
    text_grounding: bool = Field(False, description="semantic only: add each name's grounded mask to its class map "
                                 f"(one text round per name: a vocabulary of at most {MAX_GROUNDED_NAMES} names)")

    @model_validator(mode="after")
    def _check(self):
        if isinstance(self.vocabulary, list) and sum(len(n) for n in self.vocabulary) > MAX_VOCABULARY_CHARS:
            raise ValueError(f"vocabulary: at most {MAX_VOCABULARY_CHARS:,} characters in all names together "
                             "(text encoding time grows with them)")
        if self.text_grounding:
            if self.kind != "semantic":
                raise ValueError(f"text_grounding: applies to kind 'semantic' only, not {self.kind!r}")
            if not isinstance(self.vocabulary, list) or len(self.vocabulary) > MAX_GROUNDED_NAMES:
                raise ValueError(f"text_grounding: needs a vocabulary list of at most {MAX_GROUNDED_NAMES} names "
                                 "(each is its own text round)")
        return self


Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Phrase = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]


def _check_names_chars(names, field: str) -> None:
    if isinstance(names, list) and sum(len(n) for n in names) > MAX_VOCABULARY_CHARS:
        raise ValueError(f"{field}: at most {MAX_VOCABULARY_CHARS:,} characters in all names together "
                         "(text encoding time grows with them)")


class FindRequest(_Strict):
    """Every instance of each phrase (:meth:`seem.SeemPredictor.find`): one group of instances per phrase, from
    one decoder pass for all phrases. Phrases must be distinct and non-blank (422 otherwise)."""

    image_id: ImageId
    texts: Annotated[list[Phrase], Field(min_length=1, max_length=MAX_SHAPES)]
    score_threshold: Unit = Field(0.3, description="keep instances scoring at least this")
    nms_threshold: Unit = Field(0.5, description="mask IoU above which the lower-scored instance is dropped")
    max_instances: Annotated[int, Field(ge=1, le=100)] = Field(100, description="at most this many per phrase")

    @model_validator(mode="after")
    def _check(self):
        _check_names_chars(self.texts, "texts")
        return self


class EverythingRequest(_Strict):
    """Everything mode (``segment_everything(kind="everything")``): class-agnostic masks of every object and
    region, each with its best label over ``vocabulary``."""

    image_id: ImageId
    vocabulary: Literal["coco"] | Annotated[list[Phrase], Field(min_length=1, max_length=MAX_VOCABULARY)] | None = \
        Field(None, description='names for the labels, or "coco" (default: the model\'s vocabulary)')
    points_per_side: Annotated[int, Field(ge=1, le=32)] = Field(16, description="an n x n grid of point prompts")
    score_threshold: Unit = Field(0.15, description="keep masks scoring at least this (mask probability x stability)")
    stability_threshold: Unit = Field(0.3, description="SAM's stability score threshold")
    nms_threshold: Unit = Field(0.7, description="mask IoU above which the lower-scored mask is dropped")
    crop_n_layers: Annotated[int, Field(ge=0, le=2)] = Field(
        0, description="SAM's crop layers: layer i also decodes 2^i x 2^i overlapping crops, each encoded as an image "
                       "(1 adds 4 crops, 2 adds 20: several image encodings per call)")
    point_decoding: Literal["click", "sampled"] = Field(
        "click", description='"click": grid points decoded as user clicks (seem_tiny: its candidates, scorer and fit); '
                             '"sampled": by Eq. 5 over the sampled spatial queries (faster)')
    skip_covered_points: StrictBool = Field(False, description="decode grid points only where no object-query mask "
                                                               "lies (faster, finds less)")

    @model_validator(mode="after")
    def _check(self):
        _check_names_chars(self.vocabulary, "vocabulary")
        return self


class CvatRequest(_Strict):
    """CVAT interactor call: positive / negative clicks and an optional bounding box of one object; at least
    one positive point or an ``obj_bbox`` (422 otherwise), at most 512 points in all."""

    image_id: ImageId
    pos_points: Annotated[list[Point], Field(max_length=MAX_POINTS)] = []
    neg_points: Annotated[list[Point], Field(max_length=MAX_POINTS)] = []
    obj_bbox: Box | None = None

    @model_validator(mode="after")
    def _check(self):
        if len(self.pos_points) + len(self.neg_points) > MAX_POINTS:
            raise ValueError(f"pos_points + neg_points: at most {MAX_POINTS} points in all")
        if not self.pos_points and self.obj_bbox is None:
            raise ValueError("pos_points: at least one positive point (or an obj_bbox) is needed")
        return self


# ---------------------------------------------------------------------------------------------- responses
class RLEOut(BaseModel):
    size: list[int] = Field(description="[H, W]")
    counts: str


class MaskOut(BaseModel):
    """One mask, original image size: exact as RLE; ``polygon`` holds its outer contours (no holes)."""

    rle: RLEOut
    polygon: list[list[float]] = Field(description="COCO polygons [x0, y0, x1, y1, ...], one per connected part")
    bbox: list[float] = Field(description="COCO [x, y, width, height] pixels; zeros for an empty mask")
    area: int = Field(description="pixels")
    score: float
    label: str


class ImageInfo(BaseModel):
    image_id: str = Field(description="sha256 of the uploaded bytes")
    width: int
    height: int
    cached: bool = Field(description="true when these bytes were already encoded (no new encoding)")


class PredictResponse(BaseModel):
    masks: list[MaskOut]
    latency_ms: float


class SegmentOut(MaskOut):
    id: int = Field(description="segment id (panoptic: value in the segmentation map; semantic: class index)")
    label_id: int
    isthing: bool | None = None


class PanopticResponse(BaseModel):
    kind: str
    vocabulary_size: int
    segments: list[SegmentOut]
    latency_ms: float


class PhraseGroupOut(BaseModel):
    phrase: str
    instances: list[MaskOut] = Field(description="best first; each instance's label is the phrase")


class FindResponse(BaseModel):
    groups: list[PhraseGroupOut] = Field(description="one group per phrase, in the order of the request")
    latency_ms: float


class EverythingMaskOut(MaskOut):
    stability_score: float
    label_score: float = Field(description="probability of the label")
    source: Literal["query", "point"] = Field(description="made by an object query or by a grid point prompt")
    crop_box: list[int] = Field(description="[x0, y0, x1, y1] pixels of the crop the mask was found in (the whole "
                                            "image without crop layers)")


class EverythingResponse(BaseModel):
    masks: list[EverythingMaskOut]
    latency_ms: float


class SessionInfo(BaseModel):
    session_id: str
    image_id: str
    width: int
    height: int


class ObjectOut(MaskOut):
    object: int
    num_points: int
    prompts: list[str] = Field(description="prompt types this object has accumulated")


class SessionState(SessionInfo):
    current_object: int | None
    objects: list[ObjectOut]
    can_undo: bool
    can_redo: bool
    latency_ms: float | None = None


class CvatResponse(BaseModel):
    polygon: list[list[float]] = Field(description="[[x, y], ...] the largest outer contour")
    mask: RLEOut


class ModelInfo(BaseModel):
    name: str
    precision: str
    device: str
    vocabulary_size: int
    vocabulary: list[str]
    config: dict


class MemoryUse(BaseModel):
    """Approximate bytes the server holds, against its budgets (least recently used entries are dropped)."""

    images_bytes: int = Field(description="encoded image features and pixels in the image cache")
    images_budget_bytes: int
    sessions_bytes: int = Field(description="session histories: low-res logits, RLE masks, prompt vertices")
    sessions_budget_bytes: int
    vocabularies: int = Field(description="client vocabularies kept (memory-only LRU)")


class Health(BaseModel):
    status: str
    images: int
    sessions: int
    memory: MemoryUse


class ErrorOut(BaseModel):
    detail: str
