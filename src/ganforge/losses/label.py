"""Label matching (Han et al. 2021, "Dual projection generative adversarial networks", P2GAN): the class
term a conditional run can add beside its adversarial loss (train.label_matching).

The projection D already holds a classifier: its class embedding, read against the features phi(x), gives
logits <embed(k), phi(x)> for every class k (nets/conditional.class_logits). P2GAN trains them with
cross-entropy:
    D descends  w * CE(classes(x_real), y_real)   D learns what each class looks like, on real images only
                                                   (AC-GAN also fits fakes: that rewards G for easy classes)
    G descends  w * CE(classes(G(z, y)), y)        G makes images D's classifier puts in the class asked
The projection alone ties images to classes only through D's real/fake score; the term asks for it
directly, which is what conditional accuracy measures.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from ganforge.errors import ConfigError
from ganforge.losses.base import Stats


class LabelMatching:
    STATS: ClassVar[tuple[str, ...]] = ("class_ce_real", "class_ce_fake")  # D phase, then G phase

    def __init__(self, weight: float):
        if not weight > 0:
            raise ConfigError(f"train.label_matching must be > 0 for the class term (0: off), got {weight}")
        self.weight = float(weight)

    def _term(self, logits: torch.Tensor, y: torch.Tensor, key: str) -> tuple[torch.Tensor, Stats]:
        ce = F.cross_entropy(logits.float(), y)  # fp32: the log-softmax of bf16 logits loses the margin
        return self.weight * ce, {key: ce.detach()}

    def d_term(self, logits_real: torch.Tensor, y_real: torch.Tensor):
        """(weighted CE of D's class logits [B, K] of the real batch against its labels, stats): added to
        L_d."""
        return self._term(logits_real, y_real, "class_ce_real")

    def g_term(self, logits_fake: torch.Tensor, y_fake: torch.Tensor):
        """(weighted CE of D's class logits of G's images against the classes asked of G, stats): added
        to L_g."""
        return self._term(logits_fake, y_fake, "class_ce_fake")
