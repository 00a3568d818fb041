"""Networks and the generator file format shared by train (writes) and sample/evaluate (read)."""

from ganforge.nets.dcgan import Discriminator, Generator, init_dcgan_weights, net_plan
from ganforge.nets.store import GENERATOR_FORMAT, load_generator, save_generator

__all__ = [
    "GENERATOR_FORMAT",
    "Discriminator",
    "Generator",
    "init_dcgan_weights",
    "load_generator",
    "net_plan",
    "save_generator",
]
