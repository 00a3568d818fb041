"""Networks, their registry, and the generator file that train writes and sample/evaluate read.

ARCHITECTURES maps a params.yaml name to the G and D classes, their weight init and the resolutions they
support. A new architecture is one module plus one line here. Every G and D constructor takes the same
keyword arguments (G: z_dim, channels, resolution, g_channels, spectral_norm, num_classes; D: channels,
resolution, d_channels, spectral_norm, num_classes; num_classes 0 = unconditional, nets/conditional.py) and
has config() returning them; the generator file stores that config and the
architecture's name, so sample/evaluate/the MLflow model rebuild any G from the file alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel
from torch import nn

from ganforge.errors import ConfigError
from ganforge.nets import dcgan, mlp, resnet, stylegan2
from ganforge.nets.dcgan import Discriminator, Generator, init_dcgan_weights, net_plan
from ganforge.nets.mlp import (
    MLPDiscriminator,
    MLPGenerator,
    PacGANDiscriminator,
    PacGANGenerator,
    PacGANPaperDiscriminator,
    PacGANPaperGenerator,
    init_mlp_weights,
    init_pacgan_weights,
)
from ganforge.nets.packing import input_channels, pack_input
from ganforge.nets.resnet import ResNetDiscriminator, ResNetGenerator, init_resnet_weights
from ganforge.nets.store import GENERATOR_FORMAT, load_generator, save_generator
from ganforge.settings import NoSettings


@dataclass(frozen=True)
class Architecture:
    G: type[nn.Module]
    D: type[nn.Module]
    init: Callable[[nn.Module], None]  # in-place weight init, seeded by the caller's global RNG
    resolutions: tuple[int, ...]  # the data resolutions G and D are built for
    data: str = "images"  # what they model: "images" (uint8 data) or "points" (the toy 2-D data sets)
    # the architecture's own hyperparameters (train.arch: {kind: name, <setting>: value}), given to both
    # constructors as keyword arguments; widths, z and spectral norm are every architecture's (train.*)
    Settings: type[BaseModel] = NoSettings


ARCHITECTURES: dict[str, Architecture] = {
    "dcgan": Architecture(Generator, Discriminator, init_dcgan_weights, dcgan.RESOLUTIONS),
    "resnet": Architecture(ResNetGenerator, ResNetDiscriminator, init_resnet_weights, resnet.RESOLUTIONS),
    "mlp": Architecture(MLPGenerator, MLPDiscriminator, init_mlp_weights, mlp.RESOLUTIONS, data="points"),
    "mlp-pacgan": Architecture(PacGANGenerator, PacGANDiscriminator, init_mlp_weights, mlp.RESOLUTIONS,
                               data="points"),
    "mlp-pacgan-paper": Architecture(PacGANPaperGenerator, PacGANPaperDiscriminator, init_pacgan_weights,
                                     mlp.RESOLUTIONS, data="points"),
    "stylegan2": Architecture(stylegan2.StyleGAN2Generator, stylegan2.StyleGAN2Discriminator,
                              stylegan2.init_stylegan2_weights, stylegan2.RESOLUTIONS,
                              Settings=stylegan2.StyleGAN2Settings),
}


def architectures_for(data: str) -> tuple[str, ...]:
    """The registry names of the architectures that model `data` ("images" or "points")."""
    return tuple(name for name, arch in ARCHITECTURES.items() if arch.data == data)


def get_architecture(name: str, resolution: int | None = None, data: str | None = None) -> Architecture:
    """The registry entry `name`; with `data` (the judge's data kind: images | points), also checks that it
    models such data, and with `resolution` that it supports that resolution (points: 1)."""
    if name not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {name!r} (allowed: {', '.join(ARCHITECTURES)})")
    arch = ARCHITECTURES[name]
    data = data or ("points" if resolution == 1 else "images" if resolution is not None else None)
    if data is not None and arch.data != data:
        what = "2-D points (a toy data set)" if data == "points" else f"{resolution} px images"
        raise ConfigError(f"architecture {name!r} models {arch.data}, but the data are {what}: use "
                          f"{' or '.join(architectures_for(data))}")
    if resolution is not None and resolution not in arch.resolutions:
        raise ConfigError(f"architecture {name!r} does not support {resolution} px images "
                          f"(supported resolutions: {', '.join(map(str, arch.resolutions))})")
    return arch


def architecture_name(G: nn.Module) -> str:
    """The registry name of a network's architecture (what the generator file records)."""
    for name, arch in ARCHITECTURES.items():
        if type(G) in (arch.G, arch.D):
            return name
    raise ValueError(f"{type(G).__name__} is not the G or D of a registered architecture")


def build_networks(architecture: str, *, z_dim: int, channels: int, resolution: int, g_channels: int,
                   d_channels: int, g_spectral_norm: bool, d_spectral_norm: bool, num_classes: int = 0,
                   d_inputs: int | None = None, settings: dict | None = None) -> tuple[nn.Module, nn.Module]:
    """(G, D) of `architecture`, initialised from the global torch RNG (seed it first), on the CPU.

    The order of the random draws is part of what a seed means (bench/trajectory_hashes.py pins it): G's and
    D's constructors (default init, spectral norm's vectors), then G's init, then D's. num_classes > 0: a
    class-conditional pair (conditional BatchNorm in G, projection D); 0 draws as an unconditional pair does.
    d_inputs: D's input channels when they are not G's output channels (PacGAN packing, minibatch stddev:
    nets/packing.py); None = `channels`. settings: the architecture's own (its Settings, validated)."""
    arch = get_architecture(architecture, resolution)
    own = dict(settings or {})
    G = arch.G(z_dim=z_dim, channels=channels, resolution=resolution, g_channels=g_channels,
               spectral_norm=g_spectral_norm, num_classes=num_classes, **own)
    D = arch.D(channels=d_inputs or channels, resolution=resolution, d_channels=d_channels,
               spectral_norm=d_spectral_norm, num_classes=num_classes, **own)
    arch.init(G)
    arch.init(D)
    return G, D


__all__ = [
    "ARCHITECTURES",
    "MLPDiscriminator",
    "MLPGenerator",
    "PacGANDiscriminator",
    "PacGANGenerator",
    "PacGANPaperDiscriminator",
    "PacGANPaperGenerator",
    "GENERATOR_FORMAT",
    "Architecture",
    "Discriminator",
    "Generator",
    "ResNetDiscriminator",
    "ResNetGenerator",
    "architecture_name",
    "architectures_for",
    "build_networks",
    "get_architecture",
    "init_dcgan_weights",
    "init_mlp_weights",
    "init_pacgan_weights",
    "init_resnet_weights",
    "input_channels",
    "load_generator",
    "net_plan",
    "pack_input",
    "save_generator",
]
