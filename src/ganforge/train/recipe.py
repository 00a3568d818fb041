"""params.yaml -> the training function's arguments: the one mapping that the train stage and the
benchmarks share."""

from __future__ import annotations

from ganforge.data.registry import get_dataset
from ganforge.errors import ConfigError
from ganforge.nets import get_architecture
from ganforge.nets.packing import check_batch


def train_kwargs(p, data_hash: str, device, resolution: int) -> dict:
    """train()'s keyword arguments (its signature is the schema) from params.yaml's base and train sections
    (config.Params), for data of `resolution` px. An architecture that cannot make such images is a
    ConfigError naming train.arch, raised before any training."""
    t = p.train
    try:
        get_architecture(t.arch, resolution)
    except ConfigError as e:
        raise ConfigError(f"train.arch: {e}") from None
    check_batch(t.batch_size, t.pack, t.mbstd_group)
    if t.eval.every_kimg and get_dataset(p.base.dataset).counts_modes:
        raise ConfigError(f"train.eval.every_kimg: the in-training evaluation measures FID in the CNN "
                          f"judge's features, which {p.base.dataset} has not (set 0: the evaluate stage "
                          "counts modes)")
    if resolution == 1 and t.augment:
        raise ConfigError(f"train.augment: DiffAugment ({t.augment!r}) transforms images; the toy 2-D data "
                          "take none (\"\")")
    img_per_step = t.batch_size * t.d_steps
    return dict(seed=p.base.seed, data_hash=data_hash, device=device, fast=t.fast, arch=t.arch,
                g_spectral_norm=t.spectral_norm.g, d_spectral_norm=t.spectral_norm.d, loss=t.loss,
                reg=t.reg.kind, reg_weight=t.reg.weight, reg_every=t.reg.every, augment=t.augment,
                z_dim=t.z_dim, g_channels=t.g_channels, d_channels=t.d_channels, batch_size=t.batch_size,
                lr_g=t.g.lr, beta1_g=t.g.beta1, beta2_g=t.g.beta2, lr_d=t.d.lr, beta1_d=t.d.beta1,
                beta2_d=t.d.beta2, d_steps=t.d_steps, lr_decay=t.lr_decay, kimg=t.kimg,
                ema_enabled=t.ema.enabled, ema_decay=t.ema.decay, conditional=t.conditional,
                fake_labels=t.fake_labels, label_matching=t.label_matching,
                eval_every=max(1, round(t.eval.every_kimg * 1000 / img_per_step)) if t.eval.every_kimg else 0,
                eval_n=t.eval.n, log_every=t.log_every, image_every=t.image_every, ckpt_every=t.ckpt_every,
                pack=t.pack, mbstd_group=t.mbstd_group)
