"""Network files that rebuild themselves: models/generator.pt and models/evaluator.pt.

A file holds a format tag, the constructor config (net.config()), CPU weights and JSON-able meta, as plain
dicts/tensors so it loads with torch.load(weights_only=True); sampling needs only the generator file.
A generator file also names its architecture (a key of ganforge.nets.ARCHITECTURES). Files written before
the registry existed have no name and no spectral_norm in their config: they are DCGANs without it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ganforge.errors import GanforgeError
from ganforge.io import atomic_torch_save, load_torch

GENERATOR_FORMAT = "ganforge.generator/1"


def save_net(path: str | Path, net, fmt: str, meta: dict | None = None, **header) -> Path:
    """A network file that rebuilds itself: format tag, the constructor config (net.config()), CPU weights
    and JSON-able meta, as plain dicts/tensors so it loads with weights_only=True (load_net).
    header: further top-level JSON-able entries of the file (the generator's architecture name)."""
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    return atomic_torch_save(path, {"format": fmt, **header, "config": net.config(), "state_dict": state,
                                    "meta": dict(meta or {})})


def load_net(path: str | Path, fmt: str, cls, device="cpu", what: str = "network", hint: str = ""):
    """(cls(**config) with the file's weights, in eval mode on `device`, the file's meta).

    A file of another format is refused naming `what` it should have been, plus `hint` (what to run)."""
    blob = read_net_file(path, fmt, what, hint)
    return build_net(cls, blob["config"], blob["state_dict"], device), dict(blob.get("meta", {}))


def read_net_file(path: str | Path, fmt: str, what: str, hint: str) -> dict:
    """The file's dict, refused (GanforgeError naming `what` it should have been, plus `hint`) unless its
    format tag is `fmt`."""
    blob = load_torch(path)
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise GanforgeError(f"{path} is not a ganforge {what} file (expected format {fmt}){hint}")
    return blob


def build_net(cls, config: dict, state_dict: dict, device) -> nn.Module:
    """cls(**config) with the weights `state_dict`, in eval mode on `device`."""
    net = cls(**config)
    net.load_state_dict(state_dict)
    return net.to(device).eval()


def save_generator(path: str | Path, G: nn.Module, meta: dict | None = None) -> Path:
    """meta: JSON-able facts about the run (dataset, kimg, whether these are EMA weights, ...)."""
    from ganforge.nets import architecture_name  # the registry imports this module

    return save_net(path, G, GENERATOR_FORMAT, meta, architecture=architecture_name(G))


def load_generator(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild G from the file alone, whatever its architecture; returns (G in eval mode on `device`, the
    file's meta)."""
    from ganforge.nets import get_architecture

    blob = read_net_file(path, GENERATOR_FORMAT, "generator", "")
    if "architecture" in blob:
        name, config = blob["architecture"], blob["config"]
    else:  # written before the architecture registry: a DCGAN without spectral norm
        name, config = "dcgan", {**blob["config"], "spectral_norm": False}
    G = build_net(get_architecture(name).G, config, blob["state_dict"], device)
    return G, dict(blob.get("meta", {}))
