"""What D sees of a batch: PacGAN packing and the minibatch-standard-deviation feature, for any D.

Both act on D's input, so they work with every architecture of the registry and every loss: the loop builds
D with `input_channels(C, pack, mbstd_group)` channels and passes every batch through `pack_input` first
(after DiffAugment), in both phases and in the penalties (the gradient flows back through them to each
image).

Packing (Lin et al. 2018, "PacGAN"): D judges `pack` samples at once, concatenated along channels, all real
or all fake: [B, C, H, W] -> [B / pack, pack * C, H, W], samples i*pack .. i*pack + pack - 1 in pack i.
A collapsed G is then easy to spot (m near-identical samples), which is the point.

Minibatch stddev (Karras et al. 2018, "Progressive growing of GANs", section 3): the standard deviation of
each input value over a group of `mbstd_group` samples, averaged into one number per group, appended as one
constant channel to each of the group's inputs: a batch without diversity shows a small value. ProGAN puts
it before D's last block, on features; here it sits at D's input, the one place every registered D has
(for the MLP on points that is the same thing: its features are the coordinates).
"""

from __future__ import annotations

import torch

from ganforge.errors import ConfigError


def input_channels(channels: int, pack: int, mbstd_group: int) -> int:
    """D's input channels for data of `channels` channels: pack * channels, plus one for the stddev."""
    return channels * pack + (1 if mbstd_group else 0)


def check_batch(per_rank: int, pack: int, mbstd_group: int) -> None:
    """ConfigError naming the key unless packs and stddev groups tile each process's share of the batch
    (train.batch_size / train.nproc samples: every rank packs its own rows) exactly."""
    if per_rank % pack:
        raise ConfigError(f"train.pack: {pack} does not divide the {per_rank} samples per process "
                          f"(train.batch_size / train.nproc; D judges packs of {pack}); use a divisor, "
                          "1 = off")
    if mbstd_group and (per_rank // pack) % mbstd_group:
        raise ConfigError(f"train.mbstd_group: {mbstd_group} does not divide the {per_rank // pack} inputs "
                          f"D sees per batch and process (train.batch_size / train.nproc / train.pack); use "
                          "a divisor, 0 = off")


def minibatch_stddev(x: torch.Tensor, group: int) -> torch.Tensor:
    """x: [N, C, H, W] -> [N, 1, H, W]: per group of `group` consecutive inputs, the mean over C, H, W of
    the standard deviation over the group (ProGAN's layer with one feature map)."""
    n, c, h, w = x.shape
    y = x.reshape(n // group, group, c, h, w)  # [N/g, g, C, H, W]
    std = (y.var(dim=1, unbiased=False) + 1e-8).sqrt()  # [N/g, C, H, W]
    s = std.mean(dim=(1, 2, 3))  # [N/g]
    return s.repeat_interleave(group)[:, None, None, None].expand(n, 1, h, w)


def pack_input(x: torch.Tensor, pack: int, mbstd_group: int) -> torch.Tensor:
    """x: [B, C, H, W] -> D's input [B / pack, input_channels(C, pack, mbstd_group), H, W]."""
    if pack > 1:
        b, c, h, w = x.shape
        x = x.reshape(b // pack, pack * c, h, w)  # sample j of pack i -> channels j*C .. j*C + C - 1
    if mbstd_group:
        x = torch.cat([x, minibatch_stddev(x, mbstd_group)], dim=1)
    return x
