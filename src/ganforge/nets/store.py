"""models/generator.pt: the weights to sample from plus the config needed to rebuild the network.

Saved as plain dicts/tensors so it loads with torch.load(weights_only=True); sampling needs only this file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ganforge.errors import GanforgeError
from ganforge.io import atomic_torch_save, load_torch
from ganforge.nets.dcgan import Generator

GENERATOR_FORMAT = "ganforge.generator/1"


def save_generator(path: str | Path, G: Generator, meta: dict | None = None) -> Path:
    """meta: JSON-able facts about the run (dataset, kimg, whether these are EMA weights, ...)."""
    state = {k: v.detach().cpu() for k, v in G.state_dict().items()}
    return atomic_torch_save(path, {"format": GENERATOR_FORMAT, "config": G.config(), "state_dict": state,
                                    "meta": dict(meta or {})})


def load_generator(path: str | Path, device: torch.device | str = "cpu") -> tuple[Generator, dict]:
    """Rebuild G from the file alone; returns (G in eval mode on `device`, the file's meta)."""
    blob = load_torch(path)
    if not isinstance(blob, dict) or blob.get("format") != GENERATOR_FORMAT:
        raise GanforgeError(f"{path} is not a ganforge generator file (expected format {GENERATOR_FORMAT})")
    G = Generator(**blob["config"])
    G.load_state_dict(blob["state_dict"])
    return G.to(device).eval(), dict(blob.get("meta", {}))
