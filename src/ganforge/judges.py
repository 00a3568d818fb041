"""The judges: what kind of data a dataset is and how it is judged. Every stage asks judge_for(dataset).

Each dataset registry entry (data/registry.py) names its judge; nothing else decides whether a dataset is
images or points, whether the evaluator stage trains a CNN or writes a mode table, or whether FID, CAS and
the model registry's champion apply.

  classifier  the CNN classifier of the dataset's classes (metrics/evaluator.py): FID, KID, precision/recall
              and density/coverage in its features, the class histogram, in-training FID, CAS
  self-supervised  the same CNN trained without labels, by SimCLR (metrics/ssl.py): the same feature
              metrics and in-training FID; no class metrics, no CAS. For data without classes, and for any
              image data with evaluator.kind: self-supervised
  modes       the mode table of a toy 2-D mixture (metrics/modes.py): modes covered, high-quality share,
              mode KL
  stacked     the MNIST classifier read per channel of Stacked MNIST (metrics/stacked.py): the same mode
              metrics over 1000 modes, with the share of clearly read images

A translation data set (data/translation.py: two domains, not one set of images) is no data for the
generation stages: judge_for refuses it (exit 2). Its entry's judge is its domains' (a feature judge), each
trained on the domain's train split or on another entry's (DomainSpec.judged_on): domain_judges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the registry imports this module, and every stage the registry before any heavy import
    import numpy as np

DataKind = Literal["images", "points"]
DATA: dict[str, str] = {"images": "uint8 images [N, C, H, W]", "points": "float32 2-D points [N, 2, 1, 1]"}


@dataclass(frozen=True)
class Judge:
    name: str
    data: DataKind
    in_training_fid: bool  # a feature space for FID during training (train.eval)
    counts_modes: bool  # evaluate counts modes: no fid_ratio, so no champion; no class features, so no CAS
    what: str  # what the judge tells apart, for messages
    model: str  # what the evaluator stage writes to models/evaluator.pt
    reference: str  # and to results/evaluator/reference.npz

    def check(self, x: np.ndarray, where: str) -> None:
        """ConfigError unless `x` is the data this judge judges: a registry entry that names the wrong judge
        (or data of another kind) fails here, not in a judge that cannot read them."""
        from ganforge.data.prepared import is_images, is_points
        from ganforge.errors import ConfigError

        if not (is_points(x) if self.data == "points" else is_images(x)):
            raise ConfigError(f"{where}: {x.dtype} {list(x.shape)}, but the dataset's judge ({self.name}) "
                              f"judges {DATA[self.data]}: check base.dataset and its registry entry's judge")


JUDGES: dict[str, Judge] = {j.name: j for j in (
    Judge("classifier", "images", in_training_fid=True, counts_modes=False, what="image classes",
          model="a CNN classifier of the classes (metrics/evaluator.py)",
          reference="the test split's features and class histogram (metrics.Reference)"),
    Judge("self-supervised", "images", in_training_fid=True, counts_modes=False, what="images (no labels)",
          model="a SimCLR encoder trained on the real train split alone (metrics/ssl.py)",
          reference="the test split's features (metrics.Reference)"),
    Judge("modes", "points", in_training_fid=False, counts_modes=True, what="2-D points",
          model="the mode table: info.json's centres and std (metrics/modes.py)",
          reference="the test split's mode histogram (mode_hist)"),
    Judge("stacked", "images", in_training_fid=False, counts_modes=True, what="1000 stacked-digit modes",
          model="a CNN classifier of MNIST digits, read per channel (metrics/stacked.py)",
          reference="the test split's histogram over the 1000 modes (mode_hist)"),
)}


# the judges of image data in a feature space: evaluator.kind picks one of them for any image dataset
FEATURE_JUDGES = ("classifier", "self-supervised")


def judge_for(dataset: str, kind: str = "auto", classes: int | None = None) -> Judge:
    """The judge of registered dataset `dataset` ($GANFORGE_REGISTRY included); an unknown name is a
    ConfigError (exit 2) listing the valid ones.

    kind: evaluator.kind; auto = the entry's judge, except that image data with fewer than 2 `classes`
    (info.json's, when known: a flat folder) are judged without labels. A feature judge named by kind
    replaces the entry's for image data; the mode counters cannot be replaced."""
    from ganforge.data.registry import get_dataset  # here: the registry imports JUDGES to check its entries
    from ganforge.errors import ConfigError

    spec = get_dataset(dataset)
    if spec.kind == "translation":
        a, b = (d.name for d in spec.domains)
        raise ConfigError(f"base.dataset {dataset} is a translation data set (two domains, {a} and {b}: "
                          "data/translation.py), not images to generate: the generation stages (evaluator, "
                          "train, evaluate, synthesize) do not take it; set base.dataset to an image "
                          "data set, or use the translation pipeline")
    judge = spec.judge
    if judge not in FEATURE_JUDGES:
        if kind != "auto":
            raise ConfigError(f"evaluator.kind is {kind}, but {dataset} is judged by counting modes "
                              f"({judge}): set evaluator.kind to auto")
        return JUDGES[judge]
    if kind == "auto":
        kind = "self-supervised" if classes is not None and classes < 2 else judge
    return JUDGES[kind]


def domain_judges(dataset: str) -> dict[str, tuple[Judge, str | None]]:
    """{domain: (its judge, the registry entry whose train split trains it; None: the domain's own)} of
    translation data set `dataset`, A then B; any other data set is a ConfigError (exit 2)."""
    from ganforge.data.registry import get_dataset
    from ganforge.errors import ConfigError

    spec = get_dataset(dataset)
    if spec.kind != "translation":
        raise ConfigError(f"{dataset} is not a translation data set (kind {spec.kind}): it has no domains")
    return {d.name: (JUDGES[spec.judge], d.judged_on) for d in spec.domains}
