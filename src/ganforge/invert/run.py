"""What the invert, inpaint and edit stages compute: pure functions from a generator, the judge and the
fixed test sample to (metrics, table rows, pictures). The stages only read files, call these and write.

Accuracy is the classifier judge's reading of an image as the test image's label (None for a label-free
judge); PSNR is of uint8 pixels (scores.psnr), over the hole for inpainting.
"""

from __future__ import annotations

import numpy as np

from ganforge.invert import masks as M
from ganforge.invert.edit import along, fit_direction, monotone, render
from ganforge.invert.inpaint import biharmonic, compose, nearest
from ganforge.invert.morpho import measure
from ganforge.invert.projector import BANK_SEED_OFFSET, Projection, invert
from ganforge.invert.scores import psnr, read_as
from ganforge.sampling import class_cycle, latents, make_grid

EDIT_SEED_OFFSET = 2 * BANK_SEED_OFFSET  # the direction-fitting samples: apart from the bank's
SHOW = 12  # images per row of the pictures


def _mean(a) -> float | None:
    return None if a is None else float(np.mean(a))


def inversion(G, judge, x, y, cfg, *, seed: int, device,
              progress=None) -> tuple[Projection, dict, np.ndarray]:
    """Project the test images x (uint8 [N, C, H, W], labels y): (the projection, metrics, a picture of
    originals over their reconstructions)."""
    P = invert(G, x, None, cfg.project, judge=judge, seed=seed, batch_size=cfg.batch_size, device=device,
               progress=progress)
    metrics = {"n": len(x), "psnr": _mean(psnr(P.images, x)),
               "accuracy": _mean(read_as(judge, P.images, y, device)),
               "accuracy_of_originals": _mean(read_as(judge, x, y, device))}  # the judge's own ceiling
    if getattr(G, "num_classes", 0):
        metrics["class_found"] = float(np.mean(P.labels == y))  # the class the projection chose is y's
    k = min(SHOW * 2, len(x))
    picture = make_grid(np.concatenate([x[:k], P.images[:k]]), nrow=k)
    return P, metrics, picture


def show_hole(x: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The masked input as a person sees it: the hole mid-grey."""
    return compose(x, np.full_like(x, 128), hole)


def inpainting(G, judge, x, y, x_train, cfg, *, seed: int, device, progress=None):
    """Every mask kind of cfg.inpaint on the test images, by the GAN and both baselines: (metrics, table
    rows {mask, bin, method, n, accuracy, hole_psnr}, {mask kind: picture})."""
    c = cfg.inpaint
    labels = M.bin_labels(c.bins)
    metrics, rows, pictures = {"accuracy_of_originals": _mean(read_as(judge, x, y, device))}, [], {}
    for kind in c.masks:
        hole = M.draw_masks(kind, len(x), x.shape[2], seed, c.centre)
        share = M.hole_share(hole)
        P = invert(G, x, hole, cfg.project, judge=judge, seed=seed, batch_size=cfg.batch_size, device=device,
                   progress=progress)
        filled = {
            "gan": compose(x, P.images, hole),
            "biharmonic": biharmonic(x, hole),
            "nearest": nearest(x, hole, x_train),
        }
        bins = M.bin_index(share, c.bins)
        for method, images in filled.items():
            ok = read_as(judge, images, y, device)
            db = psnr(images, x, hole)
            metrics[f"{kind}.{method}.accuracy"] = _mean(ok)
            metrics[f"{kind}.{method}.hole_psnr"] = _mean(db)
            for b, name in [(None, "all"), *enumerate(labels)]:
                sel = np.ones(len(x), bool) if b is None else bins == b
                if sel.any():
                    rows.append({"mask": kind, "bin": name, "method": method, "n": int(sel.sum()),
                                 "hole_share": float(share[sel].mean()),
                                 "accuracy": None if ok is None else float(ok[sel].mean()),
                                 "hole_psnr": float(db[sel].mean())})
        metrics[f"{kind}.hole_share"] = float(share.mean())
        k = min(SHOW, len(x))
        pictures[kind] = make_grid(np.concatenate([show_hole(x[:k], hole[:k]), filled["gan"][:k],
                                                   filled["biharmonic"][:k], filled["nearest"][:k], x[:k]]),
                                   nrow=k)
    return metrics, rows, pictures


def editing(G, judge, z, found, y, cfg, *, seed: int, device):
    """Edits of the projected test images (z [N, z_dim], the classes found `found`, labels y): (metrics,
    {picture name: picture}, directions {attribute: unit vectors [K, z_dim], one per class of a conditional
    G, else [1, z_dim]}). Class edits (conditional G): each image in every class; attribute edits:
    cfg.edit.sigmas steps along each attribute's direction (its class's), fitted on cfg.edit.fit_n generated
    images (a K-th of them per class)."""
    e = cfg.edit
    K = getattr(G, "num_classes", 0)
    metrics, pictures, directions = {}, {}, {}
    k = min(SHOW, len(z))
    if K:
        to = np.tile(np.arange(K), len(z))  # [N * K]
        images = render(G, np.repeat(z, K, 0), to, device)
        ok = read_as(judge, images, to, device)
        metrics["class_edit.accuracy"] = _mean(ok)  # the judge reads the class asked for
        pictures["class_edits"] = make_grid(images[: k * K], nrow=K)
    fit_labels = class_cycle(e.fit_n, range(K)) if K else None
    fit_z = latents(seed + EDIT_SEED_OFFSET, e.fit_n, G.z_dim).numpy()
    measured = measure(render(G, fit_z, fit_labels, device))
    steps = len(e.sigmas)
    zero = e.sigmas.index(0)
    groups = range(K) if K else [None]  # a conditional G: one direction per class (z means another
    # stroke in another class), fitted on that class's samples; else one for all
    for attr in e.attributes:
        pick = [slice(None) if c is None else fit_labels == c for c in groups]
        fits = [fit_direction(fit_z[s], measured[attr][s]) for s in pick]
        n = np.stack([d for d, _ in fits])  # [K or 1, z_dim]
        r2 = float(np.mean([r for _, r in fits]))
        directions[attr] = n
        per_image = n[found] if K else np.repeat(n, len(z), 0)  # [N, z_dim]: each image its class's
        moved = along(z, per_image, e.sigmas).reshape(-1, z.shape[1])  # [N * S, z_dim]
        images = render(G, moved, None if not K else np.repeat(found, steps), device)
        values = measure(images)[attr].reshape(len(z), steps)  # [N, S]
        curve = np.nanmean(values, 0)
        metrics[f"{attr}.r2"] = r2
        metrics[f"{attr}.monotone_share"] = float(monotone(values).mean())  # edits rising at every step
        metrics[f"{attr}.mean_monotone"] = bool(monotone(curve[None])[0])
        for s, v in zip(e.sigmas, curve, strict=True):
            metrics[f"{attr}.mean_at_{s:g}"] = float(v)
        read = read_as(judge, images, np.repeat(y, steps), device)
        if read is not None:  # the class stays: the judge reads y at every step (the unedited one aside)
            others = np.ones(steps, bool)
            others[zero] = False
            metrics[f"{attr}.class_kept"] = float(read.reshape(len(z), steps)[:, others].mean())
        pictures[attr] = make_grid(images[: k * steps], nrow=steps)
    return metrics, pictures, directions


def load_prior(model, evaluator, device):
    """(G, its meta, the judge) from their files; a generator without a latent space to invert into (a toy
    2-D one, or another kind of file) is a ConfigError (exit 2) before any work."""
    from ganforge.errors import ConfigError, GanforgeError
    from ganforge.invert.projector import has_latent_space
    from ganforge.metrics import load_evaluator
    from ganforge.nets import load_generator

    try:
        G, meta = load_generator(model, device)
    except GanforgeError as e:
        raise ConfigError(str(e)) from None
    if not has_latent_space(G):
        raise ConfigError(f"{model}: this generator draws 2-D points: it has no image latent space to invert "
                          "into (train an image architecture: train.arch dcgan or resnet)")
    judge, _ = load_evaluator(evaluator, device)
    return G, meta, judge


def check_images(G, images: np.ndarray, what: str) -> None:
    """ConfigError unless images (uint8 [N, C, H, W]) have G's channels and resolution."""
    from ganforge.errors import ConfigError

    want = [G.channels, G.resolution, G.resolution]
    if images.ndim != 4 or list(images.shape[1:]) != want:
        raise ConfigError(f"{what}: images of shape {list(images.shape[1:])} (channels, height, width), but "
                          f"the generator draws {want}")


def load_targets(data, n: int, G) -> tuple[np.ndarray, np.ndarray]:
    """The first n test images and labels of a prepared data directory, checked against G."""
    from ganforge.data.prepared import load_split

    x, y = load_split(data, "test")
    check_images(G, x, f"{data}/test.npz")
    return x[:n], y[:n]


def write_table(path, rows: list[dict]) -> None:
    """The inpainting table as TSV (empty cells for a label-free judge's accuracy)."""
    from ganforge.io import atomic_write_text

    cols = ["mask", "bin", "method", "n", "hole_share", "accuracy", "hole_psnr"]
    fmt = {"hole_share": "{:.4f}", "accuracy": "{:.4f}", "hole_psnr": "{:.3f}"}
    lines = ["\t".join(cols)] + ["\t".join("" if r[c] is None else fmt.get(c, "{}").format(r[c])
                                           for c in cols) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def inpaint_file(G, judge, image, mask, cfg, *, seed: int, device) -> bytes:
    """PNG bytes: the image file inpainted by masked inversion where the mask file is white (>= 128)."""
    from ganforge.errors import ConfigError
    from ganforge.io import read_png
    from ganforge.sampling import make_grid, png_bytes

    x = read_png(image, "--image")[None]  # [1, C, H, W]
    if x.shape[1] == 3 and G.channels == 1 and (x[0, 0] == x[0, 1]).all() and (x[0, 1] == x[0, 2]).all():
        x = x[:, :1]  # a grey image saved as RGB
    check_images(G, x, f"--image {image}")
    m = read_png(mask, "--mask")
    if m.shape[1:] != x.shape[2:]:
        raise ConfigError(f"--mask {mask} is {m.shape[2]} x {m.shape[1]} px, the image {x.shape[3]} x "
                          f"{x.shape[2]}: they must be the same size")
    hole = (m.max(0) >= 128)[None, None]  # [1, 1, H, W]
    if not hole.any():
        raise ConfigError(f"--mask {mask} has no hole (no pixel >= 128): nothing to inpaint")
    if hole.all():
        raise ConfigError(f"--mask {mask} is all hole: no known pixel to invert from")
    P = invert(G, x, hole, cfg.project, judge=judge, seed=seed, batch_size=1, device=device)
    return png_bytes(make_grid(compose(x, P.images, hole), pad=0))
