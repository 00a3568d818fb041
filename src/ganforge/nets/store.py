"""models/generator.pt: the weights to sample from plus the config needed to rebuild the network.

Saved as plain dicts/tensors so it loads with torch.load(weights_only=True); sampling needs only this file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ganforge.io import load_net, save_net
from ganforge.nets.dcgan import Generator

GENERATOR_FORMAT = "ganforge.generator/1"


def save_generator(path: str | Path, G: Generator, meta: dict | None = None) -> Path:
    """meta: JSON-able facts about the run (dataset, kimg, whether these are EMA weights, ...)."""
    return save_net(path, G, GENERATOR_FORMAT, meta)


def load_generator(path: str | Path, device: torch.device | str = "cpu") -> tuple[Generator, dict]:
    """Rebuild G from the file alone; returns (G in eval mode on `device`, the file's meta)."""
    return load_net(path, GENERATOR_FORMAT, Generator, device, what="generator")
