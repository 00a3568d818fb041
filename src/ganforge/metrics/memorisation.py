"""Does the generator copy its training images? Nearest train neighbours in the judge's features.

For each generated sample, the distance to its nearest train image; the yardstick is the same distance of
the real test images, which the generator never saw and which are not copies of anything. Reported:

  copy_share  the share of generated samples closer to a train image than all but `quantile` of the real
              test images are (the quantile of the test images' distances): fresh real images score about
              `quantile` by construction, a generator that replays its training set about 1
  copy_z      the data-copying statistic of Meehan et al. 2020 over the whole space (one cell): the
              Mann-Whitney U of generated vs test distances, Z-scored; below 0 the samples sit closer to
              the train set than fresh real images do (copying), above 0 farther (poor quality)
  copies_flagged  1 when copy_share is above `max_share`, else 0

Why these and not the authenticity of Alaa et al. 2022: authenticity compares a sample's distance with the
train image's distance to its own nearest train neighbour, which fresh real images fail about half the
time, so it measures no excess over real data; the test split gives that yardstick directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@torch.no_grad()
def nearest(queries: np.ndarray, keys: np.ndarray, device: torch.device | str = "cpu",
            chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(distance, index) of each query's nearest key: float32 features [N, F], [M, F] -> float64 [N],
    int64 [N]. Euclidean. The search runs in float32 (a float64 matmul is several times slower on a CPU);
    the distance to the neighbour found is then computed directly in float64, so an exact copy is at 0."""
    k = torch.from_numpy(np.ascontiguousarray(keys, dtype=np.float32)).to(device)
    k_sq = (k * k).sum(1)
    dist, idx = [], []
    for lo in range(0, len(queries), chunk):
        q = torch.from_numpy(np.ascontiguousarray(queries[lo : lo + chunk], dtype=np.float32)).to(device)
        arg = (k_sq - 2 * q @ k.t()).argmin(dim=1)  # + |q|^2, the same for every key
        diff = q.double() - k[arg].double()
        dist.append(diff.norm(dim=1).cpu())
        idx.append(arg.cpu())
    return torch.cat(dist).numpy(), torch.cat(idx).numpy()


def mann_whitney_z(a: np.ndarray, b: np.ndarray) -> float:
    """Z score of the Mann-Whitney U of a against b (ties averaged): negative when a tends to be smaller."""
    from scipy.stats import mannwhitneyu

    n1, n2 = len(a), len(b)
    u = mannwhitneyu(a, b, alternative="two-sided").statistic
    return float((u - n1 * n2 / 2) / np.sqrt(n1 * n2 * (n1 + n2 + 1) / 12))


@dataclass(frozen=True)
class Copies:
    metrics: dict           # copy_share, copy_z, copies_flagged, copy_threshold
    distance: np.ndarray    # float64 [M]: each sample's distance to its nearest train image
    neighbour: np.ndarray   # int64 [M]: the index of that train image


def copies(generated: np.ndarray, train: np.ndarray, test: np.ndarray, quantile: float, max_share: float,
           device: torch.device | str = "cpu") -> Copies:
    """generated, train, test: features [M, F], [N, F], [T, F] in one judge's space."""
    d_gen, nn = nearest(generated, train, device)
    d_test, _ = nearest(test, train, device)
    threshold = float(np.quantile(d_test, quantile))
    share = float(np.mean(d_gen < threshold))
    return Copies({"copy_share": share, "copy_z": mann_whitney_z(d_gen, d_test),
                   "copies_flagged": int(share > max_share), "copy_threshold": threshold}, d_gen, nn)


def closest_pairs(generated: np.ndarray, train: np.ndarray, c: Copies, pairs: int = 32,
                  per_row: int = 4) -> np.ndarray:
    """The picture of the `pairs` samples nearest to a train item, closest first. Images: each generated
    image beside its nearest train image, `per_row` pairs a row (sampling.make_grid). 2-D points (the toy
    data sets): the train points and those samples on the plane (plane.plane_picture)."""
    from ganforge.data.prepared import is_points

    order = np.argsort(c.distance, kind="stable")[:pairs]
    if is_points(generated):
        from ganforge.plane import extent_of, plane_picture

        return plane_picture(train, generated[order], extent_of(train))
    from ganforge.sampling import make_grid

    tiles = np.stack([t for i in order for t in (generated[i], train[c.neighbour[i]])])
    return make_grid(tiles, nrow=2 * per_row)
