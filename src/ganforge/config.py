"""Typed, validated views of params.yaml: one pydantic model per section, unknown keys forbidden.

params.yaml is the only home of hyperparameters: the models declare types, ranges and allowed values, and
no defaults, so a missing key is an error naming it, exactly like an unknown one. Allowed names (datasets,
losses, architectures, ...) come from the registries that implement them, never from a second list here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from ganforge.errors import ConfigError

Device = Literal["auto", "cpu", "cuda", "mps"]


# Upper bounds where a value has a sane maximum: a typo (an extra zero, 1e309) fails here with the key's
# name, not as an OverflowError after a run is opened, or as 64 worker processes on a CPU.
MAX_COUNT = 1_000_000_000  # steps, images, intervals
MAX_WIDTH = 65_536  # channels, z, batch


class Section(BaseModel):
    # allow_inf_nan=False: inf and nan (and 1e309, which YAML reads as inf) are no value of any key
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _registered(kind: str, names, value: str) -> str:
    """`value` if the registry that implements `kind` has it; the error lists that registry's names."""
    if value not in names:
        raise ValueError(f"unknown {kind} {value!r} (allowed: {', '.join(names)})")
    return value


def _checked_by(check, value: str) -> str:
    """`value` if check(value) raises no ConfigError; else its message, as a validation error of the key."""
    try:
        check(value)
    except ConfigError as e:
        raise ValueError(str(e)) from None
    return value


def _path_names(v: dict) -> dict:
    """`v` if its keys can name paths and DVC stages (<stage>@<key>)."""
    import re

    for name in v:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
            raise ValueError(f"name {name!r}: lower-case letters, digits, - and _ (it names paths)")
    return v


def set_dotted(raw: dict, overrides: dict) -> dict:
    """Apply {'train.kimg': 0.5, ...} to a params mapping in place (as `dvc exp run -S` does); returns it."""
    for dotted, value in overrides.items():
        node = raw
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return raw


class Base(Section):
    seed: int = Field(ge=0, lt=2**31)  # image i has seed base.seed + i: room left below 2**63
    dataset: str

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        from ganforge.data.registry import registry  # the dataset registry (plus GANFORGE_REGISTRY)

        return _registered("dataset", tuple(registry()), v)


class FolderSource(Section):
    path: str | None
    resolution: int = Field(ge=8, le=1024)
    channels: Literal[1, 3]
    test_fraction: float = Field(gt=0, lt=1)


class Tiles(Section):
    """Tiles of a slide (data/tiles.py): the histology dataset."""

    size: int = Field(ge=8, le=1024)  # side in slide pixels (level 0)
    min_tissue: float = Field(ge=0, le=1)  # share of a tile's pixels that must be tissue to keep it
    region: int = Field(ge=1, le=64)  # tiles per side of the square regions the split keeps whole


class Download(Section):
    timeout_seconds: float = Field(gt=0)
    retries: int = Field(ge=1)
    backoff_seconds: float = Field(ge=0)
    folder: FolderSource
    # the package data sets (histology, emoji, emoji-faces): images resized to this side; None = native
    resolution: Annotated[int, Field(ge=8, le=1024)] | None
    test_fraction: float = Field(gt=0, lt=1)  # of the package data sets, split by whole regions / emoji
    tiles: Tiles


class SelfSupervised(Section):
    """The label-free judge's SimCLR training (metrics/ssl.py)."""

    epochs: int = Field(ge=1, le=100_000)  # passes over the train split (each image seen in two views)
    temperature: float = Field(gt=0, le=10)  # of the NT-Xent softmax
    crop: float = Field(gt=0, le=1)  # smallest area share of a random crop (1 = no crop)
    flip: bool  # random horizontal flips (off for data whose mirror image is another thing: digits)
    rotate90: bool  # random quarter turns (tissue, textures: no up or down)
    jitter: float = Field(ge=0, lt=1)  # brightness shift and contrast factor range, +-jitter


class Evaluator(Section):
    device: Device
    # the judge of image data (ganforge.judges): auto = the dataset's (the classifier of its classes, or
    # the self-supervised encoder for data without classes)
    kind: Literal["auto", "classifier", "self-supervised"]
    epochs: int = Field(ge=1, le=100_000)
    batch_size: int = Field(ge=1, le=MAX_WIDTH)
    lr: float = Field(gt=0)
    feature_dim: int = Field(ge=2)
    self_supervised: SelfSupervised


class Ema(Section):
    enabled: bool
    decay: float = Field(ge=0, lt=1)


class Optimizer(Section):
    """Adam of one network (G or D): separate settings give TTUR (Heusel et al. 2017)."""

    lr: float = Field(gt=0)
    beta1: float = Field(ge=0, lt=1)
    beta2: float = Field(ge=0, lt=1)


class SpectralNorm(Section):
    d: bool
    g: bool


class Regularizer(Section):
    kind: str  # a key of losses.REGULARIZERS, or several joined by + (r1+r2)
    weight: float = Field(gt=0)  # R1/R2's gamma or GP's lambda
    every: int = Field(ge=1, le=MAX_COUNT)  # lazy regularisation interval (D steps)

    @field_validator("kind")
    @classmethod
    def _known_regularizer(cls, v: str) -> str:
        from ganforge.losses import regularizer_names

        return _checked_by(regularizer_names, v)


class Choice(Section):
    """A registry entry and its settings: params.yaml writes `key: name` for an entry without settings, or
    `key: {kind: name, <setting>: value, ...}`; the settings are validated by the entry's own pydantic
    model (its `Settings`), so a new entry brings its keys with it and no list here changes."""

    kind: str
    settings: dict[str, Any]

    @classmethod
    def of(cls, value: Any, registry: dict, what: str) -> Choice:
        raw = {"kind": value} if isinstance(value, str) else dict(value) if isinstance(value, dict) else {}
        kind = raw.pop("kind", None)
        if not isinstance(kind, str):
            raise ValueError(f"give a {what} name, or a mapping with `kind:` and its settings")
        _registered(what, tuple(registry), kind)
        model = registry[kind].Settings
        try:
            settings = model.model_validate(raw)
        except ValidationError as e:
            lines = [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
            raise ValueError(f"{kind}'s settings ({', '.join(model.model_fields) or 'none'}): "
                             + "; ".join(lines)) from None
        return cls(kind=kind, settings=settings.model_dump())

    @model_serializer
    def _as_written(self) -> str | dict:
        """Back to the params form: the name alone when the entry has no settings."""
        return {"kind": self.kind, **self.settings} if self.settings else self.kind


class TrainEval(Section):
    every_kimg: float = Field(ge=0, le=MAX_COUNT)  # 0 = no in-training evaluation
    n: int = Field(ge=10, le=MAX_COUNT)


class Ada(Section):
    """Adaptive discriminator augmentation (ganforge/ada.py, Karras et al. 2020)."""

    enabled: bool
    target: float = Field(gt=0, lt=1)  # of r_t = E[sign(D(x_real))]: p rises above it, falls below
    speed_kimg: float = Field(gt=0, le=MAX_COUNT)  # thousands of real images for p to move by 1
    interval: int = Field(ge=1, le=MAX_COUNT)  # steps between adjustments of p
    p_init: float = Field(ge=0, le=1)  # p at step 0
    transforms: str  # names or groups of ada.TRANSFORMS, joined by + (blit+geom+color: the paper's bgc)

    @field_validator("transforms")
    @classmethod
    def _known_transforms(cls, v: str) -> str:
        from ganforge.ada import parse_transforms

        return _checked_by(parse_transforms, v)


class Train(Section):
    device: Device
    # training processes on this node (torchrun); auto = visible GPUs
    nproc: Literal["auto"] | Annotated[int, Field(ge=1, le=1024)]
    fast: Literal["auto", "off"]
    resume: Literal["auto", "never"]
    arch: Choice  # a key of nets.ARCHITECTURES, with its settings (Choice)
    spectral_norm: SpectralNorm
    loss: Choice  # a key of losses.LOSSES, with its settings (Choice)
    reg: Regularizer
    augment: str
    ada: Ada
    # train on the first N images of the train split (small-data runs); None = all. Part of the data hash.
    limit_images: Annotated[int, Field(ge=1, le=MAX_COUNT)] | None
    z_dim: int = Field(ge=1, le=MAX_WIDTH)
    g_channels: int = Field(ge=1, le=MAX_WIDTH)
    d_channels: int = Field(ge=1, le=MAX_WIDTH)
    batch_size: int = Field(ge=1, le=MAX_WIDTH)
    g: Optimizer
    d: Optimizer
    d_steps: int = Field(ge=1, le=1000)
    lr_decay: Literal["none", "linear"]
    kimg: float = Field(gt=0, le=MAX_COUNT)
    ema: Ema
    conditional: bool  # class-conditional G and D (needs labelled data)
    fake_labels: str  # the classes asked of G while training (conditional only)
    label_matching: float = Field(ge=0)  # weight of P2GAN's class term (conditional only); 0 = off
    eval: TrainEval
    log_every: int = Field(ge=1, le=MAX_COUNT)
    image_every: int = Field(ge=1, le=MAX_COUNT)
    ckpt_every: int = Field(ge=1, le=MAX_COUNT)
    # mode-collapse mitigations on D's input (nets/packing.py)
    pack: int = Field(ge=1, le=MAX_WIDTH)  # PacGAN packing degree; 1 = off
    mbstd_group: int = Field(ge=0, le=MAX_WIDTH)  # minibatch-stddev group size; 0 = off

    # What a run may change and still continue a checkpoint: its length (a longer run continues a shorter
    # one), where it runs (the number of processes: every rank draws the same global batches; the device
    # enters as its type), whether it resumes, and the report intervals. Every other key, validated, plus
    # the data and the code, is what a checkpoint must match (ganforge.train.run.trajectory_config).
    NOT_TRAJECTORY: ClassVar[tuple[str, ...]] = ("device", "nproc", "resume", "kimg", "log_every",
                                                 "image_every", "ckpt_every")

    @field_validator("loss", mode="before")
    @classmethod
    def _known_loss(cls, v: Any) -> Choice:
        from ganforge.losses import LOSSES

        return v if isinstance(v, Choice) else Choice.of(v, LOSSES, "loss")

    @field_validator("fake_labels")
    @classmethod
    def _known_fake_labels(cls, v: str) -> str:
        from ganforge.nets.conditional import FAKE_LABELS

        return _registered("fake_labels choice", FAKE_LABELS, v)

    @field_validator("arch", mode="before")
    @classmethod
    def _known_arch(cls, v: Any) -> Choice:
        from ganforge.nets import ARCHITECTURES

        return v if isinstance(v, Choice) else Choice.of(v, ARCHITECTURES, "architecture")

    @field_validator("augment")
    @classmethod
    def _known_policy(cls, v: str) -> str:
        from ganforge.augment import parse_policy

        return _checked_by(parse_policy, v)


class Sample(Section):
    batch_size: int = Field(ge=1, le=MAX_WIDTH)
    truncation: float | None = Field(gt=0)
    psi: float = Field(ge=0, le=1)  # w-space truncation of a style-based G; 1 = off
    classes: list[int | str] | None  # conditional G: the classes to draw (names or indices); null = all
    device: Device


class ModeCounting(Section):
    min_count: int = Field(ge=1)  # samples a mode needs (within 3 std) to count as covered


class Copies(Section):
    """The memorisation check (metrics/memorisation.py)."""

    quantile: float = Field(gt=0, lt=1)  # of the test images' nearest-train distances: the copy threshold
    max_share: float = Field(ge=0, le=1)  # copy_share above this flags the generator


class Evaluate(Section):
    device: Device
    # the one evaluation sample size: generated images, and real ones in the floor
    n: int = Field(ge=10, le=MAX_COUNT)
    kid_subsets: int = Field(ge=1)
    kid_subset_size: int = Field(ge=2)
    pr_k: int = Field(ge=1)
    dc_k: int = Field(ge=1)
    inception: bool
    inception_weights: str | None
    modes: ModeCounting
    copies: Copies


class Synthesize(Section):
    """The synthetic dataset and its Classification Accuracy Score (stages/synthesize.py)."""

    device: Device
    batch_size: int = Field(ge=1, le=MAX_WIDTH)
    train_n: int = Field(ge=2, le=MAX_COUNT)  # synthetic train images (CAS trains on these alone)
    test_n: int = Field(ge=2, le=MAX_COUNT)  # synthetic test images (exported; CAS tests on real ones)
    seed_offset: int = Field(ge=0)  # image i of the train split has seed base.seed + seed_offset + i
    mix: bool  # also train on real + synthetic (the augmentation use)


class Project(Section):
    """The projector (invert/projector.py)."""

    steps: int = Field(ge=1, le=MAX_COUNT)
    lr: float = Field(gt=0, le=10)
    lr_rampup: float = Field(ge=0, le=1)  # shares of the steps
    lr_rampdown: float = Field(ge=0, le=1)
    noise: float = Field(ge=0, le=10)  # std of the noise on z at step 0
    noise_ramp: float = Field(ge=0, le=1)
    perceptual: float = Field(ge=0)  # weight of the judge-feature term
    prior: float = Field(ge=0)  # weight of mean(z^2)
    bank: int = Field(ge=0, le=MAX_COUNT)  # G samples for the warm start; 0 = seeds and a class search


class Inpaint(Section):
    masks: list[str] = Field(min_length=1)
    centre: float = Field(gt=0, lt=1)  # side of the centre square, a share of the image side
    bins: list[float] = Field(min_length=2)  # hole-share bin edges, rising, from 0 to 1

    @field_validator("masks")
    @classmethod
    def _known_masks(cls, v: list[str]) -> list[str]:
        from ganforge.invert.masks import MASKS

        for name in v:
            _registered("mask", tuple(MASKS), name)
        if len(set(v)) < len(v):
            raise ValueError("a mask kind is listed twice")
        return v

    @field_validator("bins")
    @classmethod
    def _rising(cls, v: list[float]) -> list[float]:
        if v[0] != 0 or v[-1] != 1 or any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError(f"bin edges must rise strictly from 0 to 1 (got {v})")
        return v


class Edit(Section):
    fit_n: int = Field(ge=10, le=MAX_COUNT)  # generated images measured to fit each direction
    attributes: list[Literal["thickness", "slant", "width"]] = Field(min_length=1)
    sigmas: list[float] = Field(min_length=2)  # steps along a direction, in std of z along it (rising)

    @field_validator("sigmas")
    @classmethod
    def _rising(cls, v: list[float]) -> list[float]:
        if any(b <= a for a, b in zip(v, v[1:], strict=False)) or 0 not in v:
            raise ValueError(f"steps must rise strictly and include 0, the unedited image (got {v})")
        return v


class Invert(Section):
    """A trained generator as a prior: inversion, inpainting, editing (stages/invert.py, inpaint.py,
    edit.py)."""

    device: Device
    n: int = Field(ge=1, le=MAX_COUNT)  # the first n test images
    batch_size: int = Field(ge=1, le=MAX_WIDTH)
    project: Project
    inpaint: Inpaint
    edit: Edit


class SRJudge(Section):
    """The set's judge (metrics in its features, and the GAN stage's perceptual space)."""

    kind: Literal["classifier", "self-supervised"]  # classifier needs labelled data (digits)
    crop: int = Field(ge=8, le=1024)  # side of the judged HR patches (the image side: whole images)
    n: int = Field(ge=2, le=MAX_COUNT)  # patches it trains on (random crops of the train images)
    epochs: int = Field(ge=1, le=100_000)
    batch_size: int = Field(ge=2, le=MAX_WIDTH)
    lr: float = Field(gt=0)
    feature_dim: int = Field(ge=2, le=MAX_WIDTH)
    self_supervised: SelfSupervised | None  # the views, when kind is self-supervised (null otherwise)


class SRStage(Section):
    kimg: float = Field(gt=0, le=MAX_COUNT)  # thousands of HR crops shown
    batch_size: int = Field(ge=1, le=MAX_WIDTH)
    lr: float = Field(gt=0)  # Adam's, of the SR network


class SRGan(SRStage):
    d_lr: float = Field(gt=0)
    d_channels: int = Field(ge=1, le=MAX_WIDTH)
    loss: str  # a key of losses.LOSSES without settings (ESRGAN: ragan)
    l1: float = Field(ge=0)  # the G loss's weights
    perceptual: float = Field(ge=0)
    adversarial: float = Field(gt=0)

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, v: str) -> str:
        from ganforge.losses import LOSSES

        return _registered("loss", tuple(LOSSES), v)


class SRSet(Section):
    """One benchmark of the super-resolution pipeline: its data, networks, judge and two trainings."""

    dataset: str  # a registry data set, downloaded to data/superres/<set>
    crop: int = Field(ge=8, le=4096)  # side of the HR training crops (multiple of the scale)
    augment: bool  # random flips and quarter turns of the crops (off for digits: a mirrored 7 is no 7)
    blocks: int = Field(ge=1, le=256)  # SRResNet's residual blocks
    width: int = Field(ge=1, le=MAX_WIDTH)  # its channels
    ema: float | None = Field(ge=0, lt=1)  # per-step decay of the SR network's moving average; null = off
    judge: SRJudge
    psnr: SRStage
    gan: SRGan
    test_n: int | None = Field(ge=1, le=MAX_COUNT)  # the first n test images; null = all

    @field_validator("dataset")
    @classmethod
    def _known(cls, v: str) -> str:
        from ganforge.data.registry import registry

        return _registered("dataset", tuple(registry()), v)


class Superres(Section):
    """x4 super-resolution (stages/superres_*.py): the sets, each its own DVC stages (foreach)."""

    device: Device
    scale: Literal[2, 4, 8]  # LR side = HR side / scale
    log_every: int = Field(ge=1, le=MAX_COUNT)
    image_every: int = Field(ge=1, le=MAX_COUNT)
    ckpt_every: int = Field(ge=1, le=MAX_COUNT)
    sets: dict[str, SRSet] = Field(min_length=1)

    _names = field_validator("sets")(classmethod(lambda cls, v: _path_names(v)))


class TranslationSettings(BaseModel):
    """One translation model: the task object's settings (tasks/translation.py), validated here as part of
    translate.models."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: Literal["pix2pix", "cyclegan"]
    g_width: int = Field(ge=1)  # ngf: channels of G's first layer
    g_blocks: int = Field(ge=0)  # cyclegan: ResNet blocks (junyanz: 9 at 256 px, 6 at 128)
    g_downs: int = Field(ge=2)  # pix2pix: U-Net depth (the image is padded to a multiple of 2^downs)
    d_width: int = Field(ge=1)  # ndf
    d_layers: int = Field(ge=1)  # PatchGAN's stride-2 layers (3: 70 x 70 patches)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)  # Adam's, both G and D (junyanz: 2e-4, betas (0.5, 0.999))
    loss: str  # a losses.LOSSES entry without settings: lsgan (CycleGAN), ns (pix2pix's vanilla GAN)
    l1: float = Field(ge=0)  # pix2pix: lambda_L1 (100)
    cycle: float = Field(ge=0)  # cyclegan: lambda_A = lambda_B (10)
    identity: float = Field(ge=0)  # cyclegan: lambda_identity, a share of cycle (0.5)
    pool: int = Field(ge=0)  # cyclegan: past fakes kept per domain (50); 0 = D sees the newest only


class TranslateJudge(Section):
    """The judges of a translation set's domains (ganforge.judges.domain_judges says which kind): a
    classifier of the domain's labels (or of its registry entry's judged_on data set), else SimCLR."""

    epochs: int = Field(ge=1, le=100_000)  # classifier epochs (SimCLR: self_supervised.epochs) ...
    min_images: int = Field(ge=0, le=MAX_COUNT)  # ... or more: each classifier sees at least this many
    batch_size: int = Field(ge=2, le=MAX_WIDTH)
    lr: float = Field(gt=0)
    feature_dim: int = Field(ge=2, le=MAX_WIDTH)
    self_supervised: SelfSupervised | None  # the views, for a set judged without labels (null otherwise)


class TranslateSet(Section):
    """One translation data set of the translate pipeline: its download and its domains' judges."""

    dataset: str  # a registry data set of kind translation, downloaded to data/translate/<set>
    channels: Literal[1, 3] | None  # bring both domains to this many channels (grey <-> BT.601 luma);
                                    # null: their channel counts must agree
    ground_truth: bool  # score translations against the true counterparts (needs a paired test split)
    judge: TranslateJudge
    test_n: int | None = Field(ge=1, le=MAX_COUNT)  # the first n test images of each domain; null = all

    @field_validator("dataset")
    @classmethod
    def _known(cls, v: str) -> str:
        from ganforge.data.registry import registry

        kinds = {name: spec.kind for name, spec in registry().items()}
        return _registered("translation data set", [n for n, k in kinds.items() if k == "translation"], v)


class TranslateModel(TranslationSettings):
    """One model of the translate pipeline (its train, translate and evaluate stages)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    set: str  # a key of translate.sets: the data it learns and is judged on
    kimg: float = Field(gt=0, le=MAX_COUNT)  # thousands of images of each domain shown
    ema: float | None = Field(ge=0, lt=1)  # per-step decay of the generators' moving average; null = off
    lr_decay: Literal["none", "linear"]  # linear: to 0 over the run (junyanz: constant, then linear)
    directions: tuple[Literal["ab", "ba"], ...] = Field(min_length=1)  # what translate/evaluate produce

    @model_validator(mode="after")
    def _has_directions(self) -> TranslateModel:
        if self.model == "pix2pix" and "ba" in self.directions:
            raise ValueError("directions: pix2pix translates A -> B only (ab); it has no ba generator")
        return self

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, v: str) -> str:
        from ganforge.losses import LOSSES

        return _registered("loss", tuple(LOSSES), v)


class Translate(Section):
    """Image-to-image translation (stages/translate_*.py, pipelines/translate/dvc.yaml): the data sets
    (download, judges: foreach over sets) and the models (train, translate, evaluate: foreach over models)."""

    device: Device
    log_every: int = Field(ge=1, le=MAX_COUNT)
    image_every: int = Field(ge=1, le=MAX_COUNT)
    ckpt_every: int = Field(ge=1, le=MAX_COUNT)
    sets: dict[str, TranslateSet] = Field(min_length=1)
    models: dict[str, TranslateModel] = Field(min_length=1)

    _names = field_validator("sets", "models")(classmethod(lambda cls, v: _path_names(v)))

    @field_validator("models")
    @classmethod
    def _sets_known(cls, v: dict, info: ValidationInfo) -> dict:
        if "sets" not in info.data:  # the sets failed their own validation: said there
            return v
        sets = info.data["sets"]
        if unknown := [f"{name}.set {m.set!r}" for name, m in v.items() if m.set not in sets]:
            raise ValueError(f"{', '.join(unknown)}: not a key of translate.sets ({', '.join(sets)})")
        return v


class Params(Section):
    """Every section, validated. `raw` is the mapping they were validated from: params.yaml with its recipe
    laid over it (what a run writes beside its results as the effective params)."""

    base: Base
    download: Download
    evaluator: Evaluator
    train: Train
    sample: Sample
    evaluate: Evaluate
    synthesize: Synthesize
    invert: Invert
    superres: Superres
    translate: Translate
    _raw: dict = PrivateAttr(default_factory=dict)

    @property
    def raw(self) -> dict:
        return self._raw


def _describe(err: dict, model: type[BaseModel], prefix: str = "") -> str:
    """One line per pydantic error: the dotted key, what is wrong, and what is allowed."""
    loc = (prefix + ".".join(str(p) for p in err["loc"])).rstrip(".")
    if err["type"] == "extra_forbidden":
        # walk the model tree to list the keys that *are* allowed at that level
        m: type[BaseModel] | None = model
        for part in err["loc"][:-1]:
            field = m.model_fields.get(str(part)) if m else None
            m = field.annotation if field and isinstance(field.annotation, type) else None
        allowed = ", ".join(m.model_fields) if m else "?"
        return f"{loc}: unknown key (allowed: {allowed})"
    if err["type"] == "missing":
        return f"{loc}: missing key (params.yaml is the only home of its value: add it)"
    if err["type"] == "value_error":  # our validators: the message already says what is allowed
        return f"{loc}: {err['msg'].removeprefix('Value error, ')}"
    return f"{loc}: {err['msg']} (got {err.get('input')!r})"


RECIPE_KEY = "recipe"  # params.yaml's top-level key naming the recipe: a file recipes/<name>.yaml, or null
RECIPES_DIR = "recipes"  # beside params.yaml
BUDGET_KEYS = (("train", "kimg"),)  # a recipe never sets them: a row's budget is its own -S flag
# nor these sections: DVC interpolates base.dataset into the stages' paths from params.yaml itself, and the
# download stage (which reads only them) does not depend on the recipe
NOT_IN_RECIPES = ("base", "download")


def read_yaml(path: Path):
    """A params or recipe file, read as YAML 1.2 (the version dvc writes `-S` overrides in): `off`, `yes`,
    `no` stay strings (YAML 1.1 makes them booleans, so `train.fast: off` would be refused). A missing file
    or bad YAML is a ConfigError."""
    from ruamel.yaml import YAML, YAMLError

    try:
        return YAML(typ="safe", pure=True).load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"params file not found: {path}") from None
    except YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None


def recipe_names(root: Path) -> list[str]:
    return sorted(f.stem for f in (root / RECIPES_DIR).glob("*.yaml"))


def apply_recipe(raw: dict, root: Path) -> dict:
    """params.yaml with its recipe laid over it, key by key (a recipe is a partial params file: the keys it
    sets win). `recipe: null` = params.yaml as it is. An unknown recipe, or one that sets a budget key or a
    key params.yaml does not have, is a ConfigError listing what is allowed."""
    name = raw.get(RECIPE_KEY)
    if name is None:
        return raw
    names = recipe_names(root)
    if not isinstance(name, str) or name not in names:
        raise ConfigError(f"{RECIPE_KEY}: unknown recipe {name!r} (known: {RECIPES_DIR}/*.yaml = "
                          f"{', '.join(names) or 'none'}; null = none)")
    path = root / RECIPES_DIR / f"{name}.yaml"
    recipe = read_yaml(path) or {}

    def lay(base: dict, over: dict, where: str) -> dict:
        out = dict(base)
        for key, value in over.items():
            dotted = f"{where}{key}"
            if key not in base:
                raise ConfigError(f"recipe {name}: {dotted} is not a params.yaml key")
            if not where and key in NOT_IN_RECIPES:
                raise ConfigError(f"recipe {name}: sets the {key} section, which recipes leave to "
                                  f"params.yaml (give -S {key}.<key>=... on the command line)")
            if tuple(dotted.split(".")) in BUDGET_KEYS:
                raise ConfigError(f"recipe {name}: sets {dotted}, the budget; give it on the command line "
                                  f"(-S {dotted}=...) instead")
            both_maps = isinstance(value, dict) and isinstance(base[key], dict) and "kind" not in value
            out[key] = lay(base[key], value, f"{dotted}.") if both_maps else value
        return out

    if not isinstance(recipe, dict) or RECIPE_KEY in recipe:
        raise ConfigError(f"{path} must be a mapping of params sections (and not name a recipe itself)")
    return lay(raw, recipe, "")


def parse_params(raw: dict | None, path: str | Path = "params.yaml",
                 sections: tuple[str, ...] = ()) -> Params:
    """Validate a params mapping; raise ConfigError (exit 2) listing every bad key.

    sections: validate only these (a stage reads only its own, so it neither fails on nor imports the
    registries of another stage's section); the others are left unset. Empty = every section.
    """
    raw = apply_recipe(raw or {}, Path(path).parent)
    names = sections or tuple(Params.model_fields)
    lines = [f"{k}: unknown section (allowed: {', '.join(Params.model_fields)}, {RECIPE_KEY})"
             for k in raw if k not in Params.model_fields and k != RECIPE_KEY]
    validated = {}
    for name in names:
        model = Params.model_fields[name].annotation
        if name not in raw:
            lines.append(f"{name}: missing section (params.yaml is the only home of its values: add it)")
            continue
        try:
            validated[name] = model.model_validate(raw[name])
        except ValidationError as e:
            lines += [_describe(err, model, f"{name}.") for err in e.errors()]
    if lines:
        raise ConfigError(f"invalid params in {path}:\n  " + "\n  ".join(lines))
    params = Params.model_construct(**validated)
    params._raw = raw
    return params


def load_params(path: str | Path = "params.yaml", *sections: str) -> Params:
    """Read and validate params.yaml (only `sections` when given). Missing file or bad YAML is a
    ConfigError, not a traceback."""
    path = Path(path)
    raw = read_yaml(path)
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path} must be a mapping of sections, got {type(raw).__name__}")
    return parse_params(raw, path, sections)
