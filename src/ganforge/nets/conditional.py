"""Class conditioning for both architectures: conditional BatchNorm in G, a projection head in D.

G: class-conditional BatchNorm (de Vries et al. 2017, Dumoulin et al. 2017; the G of Miyato & Koyama 2018
and of BigGAN). Every BatchNorm of G normalises without its own affine and then applies a per-class gain
and bias: gamma[y] * BN(h) + beta[y]. Chosen over a learned embedding concatenated to z because (1) the
class then acts at every resolution of G, not only through its input, which is what the projection paper
pairs with its D; (2) both architectures already have a BatchNorm after every up-sampling stage, so it is a
drop-in replacement that leaves the layer plan, z and the generator file's shape contract unchanged; (3) it
adds 2 * K * C parameters per layer and no compute.

D: the projection discriminator (Miyato & Koyama 2018): D(x, y) = psi(phi(x)) + <embed(y), phi(x)>, phi the
features D's last linear layer reads, psi that layer (the unconditional term). It is the discriminator of
a log-linear model p(y|x), unlike concatenating y to x or to a hidden layer, and it is what makes
conditional SNGAN/BigGAN work. The embedding is spectrally normalised with the rest of D when D is.

num_classes = 0 everywhere means unconditional: no extra parameters, no extra random draws, and the
modules and state_dict keys of the plain networks.
"""

from __future__ import annotations

import torch
from torch import nn

# How a conditional run draws the classes it asks G for while training: uniform over the K classes, or in
# the train split's class shares (train.fake_labels)
FAKE_LABELS = ("uniform", "histogram")


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm2d without affine, then a per-class gain and bias: [B, C, H, W], labels [B] -> [B, C, H, W].
    Labels may also be class weights [B, K] (float): the gain and bias are then their weighted sums, which
    interpolates between classes (a one-hot row is exactly its class).

    The gains start at 1 and the biases at 0 for every class (the architecture's init may redraw the gains,
    as it does an unconditional BatchNorm's), so an untrained G starts as its unconditional twin."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Parameter(torch.ones(num_classes, channels))  # [K, C]
        self.bias = nn.Parameter(torch.zeros(num_classes, channels))  # [K, C]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y.is_floating_point():  # class weights [B, K]
            gain, bias = y @ self.gain, y @ self.bias  # [B, C]
        else:
            gain, bias = self.gain[y], self.bias[y]  # [B, C]
        return gain[:, :, None, None] * self.bn(x) + bias[:, :, None, None]


def batch_norm(channels: int, num_classes: int) -> nn.Module:
    """G's BatchNorm: the plain one when unconditional (num_classes = 0), else the class-conditional one."""
    return ConditionalBatchNorm2d(channels, num_classes) if num_classes else nn.BatchNorm2d(channels)


def run_layers(layers, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """h through `layers` in order, giving the labels y to the layers that take them."""
    for layer in layers:
        h = layer(h, y) if isinstance(layer, ConditionalBatchNorm2d | ConditionalBlock) else layer(h)
    return h


class ConditionalBlock(nn.Module):
    """Marker base class of a G block whose forward takes (h, y) (the ResNet's GBlock)."""


def projection(num_classes: int, features: int) -> nn.Embedding | None:
    """D's class embedding [K, F] for the projection term, or None when unconditional. N(0, 1) rows would
    start D far from its unconditional twin; Xavier-uniform, as SNGAN's code, keeps the term small."""
    if not num_classes:
        return None
    embed = nn.Embedding(num_classes, features)
    nn.init.xavier_uniform_(embed.weight)
    return embed


def class_logits(embed: nn.Embedding | None, h: torch.Tensor) -> torch.Tensor:
    """The projection D read as a classifier: logits [B, K] = <embed(k), phi(x)> for every class k, phi(x)
    the features h ([B, F], or any shape flattening to it). These are the class logits of the log-linear
    model p(y|x) the projection assumes (Miyato & Koyama 2018, section 3); P2GAN (Han et al. 2021, "Dual
    projection GANs") trains them with cross-entropy beside the adversarial loss (train.label_matching)."""
    if embed is None:
        raise ValueError("class logits need a class-conditional D (train.conditional: true)")
    return h.flatten(1) @ embed.weight.T


def check_labels(y: torch.Tensor | None, num_classes: int, batch: int) -> None:
    """A conditional network needs one label per image (or class weights [B, K], G only); an unconditional
    one takes none."""
    if num_classes and (y is None or y.shape not in ((batch,), (batch, num_classes))):
        raise ValueError(f"a class-conditional network needs labels [{batch}], got "
                         f"{None if y is None else list(y.shape)}")
    if not num_classes and y is not None:
        raise ValueError("an unconditional network takes no labels")
