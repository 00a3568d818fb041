"""The domain judge: a small CNN classifier trained on the real training split.

Its penultimate layer (feature_dim wide, after ReLU) is the feature space of FID/KID/PRDC, its softmax the
p(y|x) of the classifier score: the offline stand-in for Inception-v3, which cannot be downloaded here.
Strided convolutions instead of conv + max-pool: a third of the compute for the same MNIST accuracy, which
keeps the evaluator stage near a minute on a 2-core CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import GanforgeError
from ganforge.metrics.ssl import PROJECTION_DIM
from ganforge.nets.store import load_net, save_net

EVALUATOR_FORMAT = "ganforge.evaluator/1"


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float [B, C, H, W] in [-1, 1], the generator's output range."""
    return images.float() / 127.5 - 1


class Evaluator(nn.Module):
    """kind classifier: head = the class logits; kind self-supervised (metrics/ssl.py): head = SimCLR's
    projection, used only in training, and num_classes is 0."""

    def config(self) -> dict:
        return {"channels": self.channels, "resolution": self.resolution, "num_classes": self.num_classes,
                "feature_dim": self.feature_dim, "kind": self.kind}

    def __init__(self, channels: int, resolution: int, num_classes: int, feature_dim: int,
                 kind: str = "classifier"):  # files written before the label-free judge are classifiers
        super().__init__()
        self.channels, self.resolution = channels, resolution
        self.num_classes, self.feature_dim, self.kind = num_classes, feature_dim, kind
        layers: list[nn.Module] = [
            nn.Conv2d(channels, 32, 5, 2, 2, bias=False), nn.BatchNorm2d(32), nn.ReLU(True),  # R -> R/2
            nn.Conv2d(32, 64, 3, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(True),  # -> R/4 (7 for 28)
        ]
        size = -(-resolution // 4)
        while size > 8:  # larger images (CIFAR 32 -> 8, folder 64 -> 8): halve until at most 8x8
            layers += [nn.Conv2d(64, 64, 3, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(True)]
            size = -(-size // 2)
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.embed = nn.Sequential(nn.Linear(64 * size * size, feature_dim), nn.ReLU(True))
        if kind == "classifier":
            self.head: nn.Module = nn.Linear(feature_dim, num_classes)
        else:
            self.head = nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.ReLU(True),
                                      nn.Linear(feature_dim, PROJECTION_DIM))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, R, R] in [-1, 1] -> [B, feature_dim]
        return self.embed(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # logits [B, num_classes] (or projections [B, PROJECTION_DIM])


def train_evaluator(
    images: np.ndarray,      # uint8 [N, C, H, W], the real training split
    labels: np.ndarray,      # int64 [N]
    num_classes: int,        # K: width of the classifier head
    feature_dim: int,        # width of the penultimate layer = the feature space of the metrics
    epochs: int,             # passes over the training split
    batch_size: int,
    lr: float,               # peak learning rate of Adam under a one-cycle schedule
    seed: int,               # initial weights, batch order: same seed + data + device -> same network
    device: torch.device,
    progress: bool = True,   # a rich progress bar over the steps
) -> Evaluator:
    torch.manual_seed(seed)
    net = Evaluator(images.shape[1], images.shape[2], num_classes, feature_dim).to(device)
    x_all = torch.from_numpy(images).to(device)  # uint8 [N, C, H, W]: 47 MB for MNIST, fits any device
    y_all = torch.from_numpy(labels).to(device)
    return fit(net, len(x_all), lambda idx: F.cross_entropy(net(to_float(x_all[idx])), y_all[idx]),
               epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, progress=progress,
               what="evaluator")


def fit(net: nn.Module, n: int, loss_of, *, epochs: int, batch_size: int, lr: float, seed: int,
        device: torch.device, progress: bool, what: str) -> nn.Module:
    """The judges' training loop: Adam under a one-cycle schedule, `epochs` seeded passes over n items in
    batches of batch_size (the ragged last one dropped: BatchNorm statistics); loss_of(index tensor) is the
    batch's loss. Returns net in eval mode."""
    steps_per_epoch = max(n // batch_size, 1)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.2)
    order = torch.Generator().manual_seed(seed)  # CPU generator: the batch order does not depend on device
    net.train()
    with progress_bar(progress, what, epochs * steps_per_epoch) as advance:
        for _ in range(epochs):
            perm = torch.randperm(n, generator=order).to(device)
            for i in range(steps_per_epoch):
                loss = loss_of(perm[i * batch_size : (i + 1) * batch_size])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                advance()
    return net.eval()


@dataclass(frozen=True)
class FeatureSet:
    """What the metrics see of one image set."""

    features: np.ndarray  # float32 [N, feature_dim], penultimate activations
    probs: np.ndarray     # float32 [N, K], softmax of the classifier head ([N, 0]: a label-free judge)


@torch.no_grad()
def extract(net: Evaluator, images: np.ndarray, device: torch.device, batch_size: int = 1000) -> FeatureSet:
    """uint8 images [N, C, H, W] -> their features and class probabilities (net in eval mode)."""
    if tuple(images.shape[1:]) != (net.channels, net.resolution, net.resolution):
        raise GanforgeError(f"images of shape {list(images.shape[1:])} do not match the evaluator, which was "
                            f"trained on {[net.channels, net.resolution, net.resolution]}")
    net.eval()
    feats, probs = [], []
    for lo in range(0, len(images), batch_size):
        x = to_float(torch.from_numpy(images[lo : lo + batch_size]).to(device))
        f = net.features(x)  # [B, F]
        feats.append(f.float().cpu())
        probs.append(torch.softmax(net.head(f).float(), dim=1).cpu() if net.kind == "classifier"
                     else torch.zeros(len(f), 0))
    return FeatureSet(torch.cat(feats).numpy(), torch.cat(probs).numpy())


def accuracy(fs: FeatureSet, labels: np.ndarray) -> float:
    return float((fs.probs.argmax(axis=1) == labels).mean())


def save_evaluator(path: str | Path, net: Evaluator, meta: dict | None = None) -> Path:
    return save_net(path, net, EVALUATOR_FORMAT, meta)


def load_evaluator(path: str | Path, device: torch.device | str = "cpu") -> tuple[Evaluator, dict]:
    return load_net(path, EVALUATOR_FORMAT, Evaluator, device, what="evaluator",
                    hint="; rerun the evaluator stage: dvc repro evaluator")


def progress_bar(enabled: bool, what: str, total: int):
    """A context manager yielding advance(k=1): a transient rich bar, or a no-op when disabled."""
    import contextlib

    if not enabled:
        return contextlib.nullcontext(lambda k=1: None)

    @contextlib.contextmanager
    def bar():
        from rich.progress import Progress

        with Progress(transient=True) as p:
            task = p.add_task(what, total=total)
            yield lambda k=1: p.advance(task, k)

    return bar()
