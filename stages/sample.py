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
    and log the grid to the training's MLflow run."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.device import resolve_device

        p = load_params(params, "base", "sample", "evaluate")
        cfg = p.sample
        device = resolve_device(cfg.device)

        from ganforge.io import atomic_save_npz, atomic_write_bytes
        from ganforge.nets import load_generator
        from ganforge.sampling import generate, make_grid, png_bytes, sample_picture

        G, meta = load_generator(model, device)
        from ganforge.tracking.store import Run  # mlflow: seconds to import, so after the cheap checks

        run = Run.attach(run_json)  # before the work: a missing run fails now, not after it
        images = generate(G, p.evaluate.n, seed=p.base.seed, batch_size=cfg.batch_size,
                          truncation=cfg.truncation, device=device)  # uint8 [n, C, H, W]
        grid = sample_picture(images) if getattr(G, "points", False) else make_grid(images[:100])
        atomic_save_npz(out / "images.npz", images=images)
        atomic_write_bytes(out / "grid.png", png_bytes(grid))
        run.log_image(grid, key="samples_final")
        print(f"sample: {len(images)} images of shape {list(images.shape[1:])} from {model} "
              f"({meta.get('weights', 'G')}, {meta.get('kimg', '?')} kimg) -> {out}/images.npz, grid.png")


if __name__ == "__main__":
    app()
