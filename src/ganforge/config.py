"""Typed, validated views of params.yaml: one pydantic model per section, unknown keys forbidden.

params.yaml is the only home of hyperparameters; the defaults below exist so that a section can be
validated on its own in tests, and they mirror params.yaml (tests/test_config.py checks that they agree).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ganforge.errors import ConfigError

DATASETS = ("mnist", "fashion-mnist", "cifar10", "folder")
Device = Literal["auto", "cpu", "cuda", "mps"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Base(Section):
    seed: int = Field(0, ge=0)
    dataset: str = "mnist"  # checked against the registry by the download stage (exit 2 + valid names)


class FolderSource(Section):
    path: str | None = None
    resolution: int = Field(64, ge=8, le=1024)
    channels: Literal[1, 3] = 3
    test_fraction: float = Field(0.1, gt=0, lt=1)


class Download(Section):
    timeout_seconds: float = Field(30, gt=0)
    retries: int = Field(3, ge=1)
    backoff_seconds: float = Field(1.0, ge=0)
    folder: FolderSource = FolderSource()


class Evaluator(Section):
    device: Device = "auto"
    epochs: int = Field(4, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(3e-3, gt=0)
    feature_dim: int = Field(128, ge=2)
    floor_n: int = Field(10000, ge=10)


class Ema(Section):
    enabled: bool = True
    decay: float = Field(0.999, ge=0, lt=1)


class Train(Section):
    device: Device = "auto"
    fast: Literal["auto", "off"] = "auto"
    loss: Literal["ns", "minimax"] = "ns"
    z_dim: int = Field(100, ge=1)
    g_channels: int = Field(64, ge=1)
    d_channels: int = Field(64, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(2e-4, gt=0)
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    kimg: float = Field(200, gt=0)
    ema: Ema = Ema()
    log_every: int = Field(20, ge=1)
    image_every: int = Field(100, ge=1)
    ckpt_every: int = Field(100, ge=1)


class Sample(Section):
    n: int = Field(10000, ge=1)
    batch_size: int = Field(500, ge=1)
    truncation: float | None = Field(None, gt=0)
    device: Device = "auto"


class Evaluate(Section):
    device: Device = "auto"
    kid_subsets: int = Field(100, ge=1)
    kid_subset_size: int = Field(1000, ge=2)
    pr_k: int = Field(3, ge=1)
    dc_k: int = Field(5, ge=1)
    inception: bool = False
    inception_weights: str | None = None


class Params(Section):
    base: Base = Base()
    download: Download = Download()
    evaluator: Evaluator = Evaluator()
    train: Train = Train()
    sample: Sample = Sample()
    evaluate: Evaluate = Evaluate()


def _describe(err: dict, model: type[BaseModel]) -> str:
    """One line per pydantic error: the dotted key, what is wrong, and what is allowed."""
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        # walk the model tree to list the keys that *are* allowed at that level
        m: type[BaseModel] | None = model
        for part in err["loc"][:-1]:
            field = m.model_fields.get(str(part)) if m else None
            m = field.annotation if field and isinstance(field.annotation, type) else None
        allowed = ", ".join(m.model_fields) if m else "?"
        return f"{loc}: unknown key (allowed: {allowed})"
    return f"{loc}: {err['msg']} (got {err.get('input')!r})"


def parse_params(raw: dict, path: str | Path = "params.yaml") -> Params:
    """Validate a params mapping; raise ConfigError (exit 2) listing every bad key."""
    try:
        return Params.model_validate(raw or {})
    except ValidationError as e:
        lines = [_describe(err, Params) for err in e.errors()]
        raise ConfigError(f"invalid params in {path}:\n  " + "\n  ".join(lines)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml. Missing file or bad YAML is a ConfigError, not a traceback."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"params file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path} must be a mapping of sections, got {type(raw).__name__}")
    return parse_params(raw, path)
