"""Standard FID with Inception-v3 (torch-fidelity's port of the TF 2015-12-05 graph), when its weights are
on disk. This machine cannot download them, so a missing file is an error that names the exact file and
where to put it; nothing is skipped silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ganforge.errors import GanforgeError
from ganforge.io import load_torch
from ganforge.metrics.fid import fid_from_features

WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_FILE}"


def default_weights_path() -> Path:
    """Where torch-fidelity's own download would cache the file: $TORCH_HOME/hub/checkpoints/."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def weights_path(configured: str | None) -> Path:
    """The weights file to use (evaluate.inception_weights, else torch's cache); an error if it is absent."""
    path = Path(configured).expanduser() if configured else default_weights_path()
    if not path.is_file():
        where = ("evaluate.inception_weights points there" if configured
                 else "that is torch's hub cache; or set evaluate.inception_weights to the file's path")
        raise GanforgeError(
            f"evaluate.inception is true but the Inception-v3 weights are not on disk: expected "
            f"{WEIGHTS_FILE} at {path.resolve()} ({where}). Download {WEIGHTS_URL} on a machine with "
            "internet and copy it there, or set evaluate.inception: false")
    return path


def _extractor(path: Path, device: torch.device):
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        raise GanforgeError("Inception FID needs torch-fidelity: pip install torch-fidelity") from None
    # torch-fidelity unpickles the file with weights_only=False; load it safely first so that a file that
    # would run code is refused here (a file that passes holds only tensors, so the second load is inert)
    state = load_torch(path)
    if not isinstance(state, dict) or "fc.weight" not in state:
        raise GanforgeError(f"{path} is not the Inception-v3 state dict {WEIGHTS_FILE}")
    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                      feature_extractor_weights_path=str(path))
    return net.to(device).eval()


@torch.no_grad()
def _features(net, images: np.ndarray, device: torch.device, batch_size: int) -> np.ndarray:
    out = []
    for lo in range(0, len(images), batch_size):
        x = torch.from_numpy(images[lo : lo + batch_size]).to(device)  # uint8 [B, C, H, W]
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # grayscale -> RGB, as every FID tool does for MNIST
        out.append(net(x)[0].double().cpu())  # pool3 features [B, 2048]; the net resizes to 299 itself
    return torch.cat(out).numpy()


def inception_fid(real: np.ndarray, fake: np.ndarray, weights: Path, device: torch.device,
                  batch_size: int = 100) -> dict:
    """real, fake: uint8 [N, C, H, W] with C in (1, 3) -> {'inception_fid'}."""
    net = _extractor(weights, device)
    a, b = _features(net, real, device, batch_size), _features(net, fake, device, batch_size)
    return {"inception_fid": fid_from_features(a, b)}
