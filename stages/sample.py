"""DVC stage `sample`: generate sample.n images from models/generator.pt, one seed per image."""

from __future__ import annotations

from pathlib import Path

import typer

from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file; reads base.seed, evaluate.n "
                                "(how many images) and the sample section"),
    model: Path = typer.Option(Path("models/generator.pt"), help="the trained generator"),
    run_json: Path = typer.Option(Path("results/train/run.json"), "--run", help="the training's MLflow run "
                                  "(the grid is logged there)"),
    out: Path = typer.Option(Path("samples"), help="directory for images.npz and grid.png"),
) -> None:
    """Write OUT/images.npz (evaluate.n uint8 images [N,C,H,W]; image i is drawn from z seeded with
    base.seed + i, so it does not depend on batch size or device) and OUT/grid.png (the first 100 images),
    and log the grid to the training's MLflow run. A class-conditional generator: image i is of class
    sample.classes[i mod len] (null: every class in turn), images.npz also holds these requested labels
    (int64 [N]) and the grid has one row per class; an unknown class exits 2 listing the classes.
    sample.psi < 1 truncates a style-based G in w (exit 2 for any other G)."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.device import resolve_device
        from ganforge.errors import ConfigError

        p = load_params(params, "base", "sample", "evaluate")
        cfg = p.sample
        device = resolve_device(cfg.device)

        from ganforge.io import atomic_save_npz, atomic_write_bytes
        from ganforge.nets import load_generator
        from ganforge.sampling import (
            class_cycle,
            class_grid,
            class_names,
            draws_points,
            generate,
            make_grid,
            png_bytes,
            resolve_classes,
            sample_picture,
            style_based,
        )

        G, meta = load_generator(model, device)
        if cfg.psi != 1 and not style_based(G):
            raise ConfigError(f"sample.psi: {cfg.psi} is w-space truncation, for a style-based G "
                              f"(train.arch: stylegan2); {model} holds a {type(G).__name__}: set it to 1 "
                              "(sample.truncation truncates z for any G)")
        labels = None  # the requested class of each image (conditional G only)
        if G.num_classes or cfg.classes is not None:
            names = class_names(G, meta) if G.num_classes else []
            wanted = list(range(len(names))) if cfg.classes is None else resolve_classes(
                cfg.classes, names, "sample.classes")  # unknown class or unconditional G: exit 2
            labels = class_cycle(p.evaluate.n, wanted)  # int64 [n]
        from ganforge.tracking.store import Run  # mlflow: seconds to import, so after the cheap checks

        run = Run.attach(run_json)  # before the work: a missing run fails now, not after it
        images = generate(G, p.evaluate.n, seed=p.base.seed, batch_size=cfg.batch_size,
                          truncation=cfg.truncation, psi=cfg.psi, device=device,
                          labels=labels)  # uint8 [n, C, H, W]
        if draws_points(G):  # 2-D points: the plane, not a grid
            grid = sample_picture(images)
        else:
            grid = make_grid(images[:100]) if labels is None else class_grid(images, labels)
        atomic_save_npz(out / "images.npz", images=images, **({} if labels is None else {"labels": labels}))
        atomic_write_bytes(out / "grid.png", png_bytes(grid))
        run.log_image(grid, key="samples_final")
        print(f"sample: {len(images)} images of shape {list(images.shape[1:])} from {model} "
              f"({meta.get('weights', 'G')}, {meta.get('kimg', '?')} kimg) -> {out}/images.npz, grid.png")


if __name__ == "__main__":
    app()
