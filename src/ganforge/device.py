"""Which torch device a stage runs on: the params say auto | cpu | cuda | mps."""

from __future__ import annotations


def resolve_device(name: str):
    """`auto` = cuda, else mps, else cpu. Asking for an absent accelerator is a ConfigError (exit 2)."""
    import torch

    from ganforge.errors import ConfigError

    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    elif name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is visible (use device: auto or cpu)")
    elif name == "mps" and not has_mps:
        raise ConfigError("device 'mps' was asked for but MPS is not available (use device: auto or cpu)")
    return torch.device(name)
