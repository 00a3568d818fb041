"""The judges: what kind of data a dataset is and how it is judged. Every stage asks judge_for(dataset).

Each dataset registry entry (data/registry.py) names its judge; nothing else decides whether a dataset is
images or points, whether the evaluator stage trains a CNN or writes a mode table, or whether FID, CAS and
the model registry's champion apply.

  classifier  the CNN classifier of the dataset's classes (metrics/evaluator.py): FID, KID, precision/recall
              and density/coverage in its features, the class histogram, in-training FID, CAS
  modes       the mode table of a toy 2-D mixture (metrics/modes.py): modes covered, high-quality share,
              mode KL
  stacked     the MNIST classifier read per channel of Stacked MNIST (metrics/stacked.py): the same mode
              metrics over 1000 modes, with the share of clearly read images
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
    Judge("modes", "points", in_training_fid=False, counts_modes=True, what="2-D points",
          model="the mode table: info.json's centres and std (metrics/modes.py)",
          reference="the test split's mode histogram (mode_hist)"),
    Judge("stacked", "images", in_training_fid=False, counts_modes=True, what="1000 stacked-digit modes",
          model="a CNN classifier of MNIST digits, read per channel (metrics/stacked.py)",
          reference="the test split's histogram over the 1000 modes (mode_hist)"),
)}


def judge_for(dataset: str) -> Judge:
    """The judge of registered dataset `dataset` ($GANFORGE_REGISTRY included); an unknown name is a
    ConfigError (exit 2) listing the valid ones."""
    from ganforge.data.registry import get_dataset  # here: the registry imports JUDGES to check its entries

    return JUDGES[get_dataset(dataset).judge]
