"""DVC stage `edit`: change the class and the stroke attributes of the projected test images."""

from __future__ import annotations

from pathlib import Path

import typer

from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file; reads base.seed and the invert "
                                "section (device, edit)"),
    latents: Path = typer.Option(Path("results/invert/latents.npz"), help="the invert stage's projections"),
    model: Path = typer.Option(Path("models/generator.pt"), help="the generator they were projected into"),
    evaluator: Path = typer.Option(Path("models/evaluator.pt"), help="the judge (reads the edited images)"),
    run_json: Path = typer.Option(Path("results/train/run.json"), "--run", help="the training's MLflow run "
                                  "(metrics and pictures are logged there)"),
    out: Path = typer.Option(Path("results/edit"), help="directory for metrics.json, directions.npz and "
                             "pictures/"),
) -> None:
    """Class edits (a conditional G): each projected image drawn in every class at its latent;
    class_edit.accuracy = the judge reads the class asked for. Attribute edits (InterFaceGAN): for each of
    invert.edit.attributes (Morpho-MNIST's thickness, slant, width) a direction in z fitted by least squares
    to the attribute measured on invert.edit.fit_n generated images, and each projected image moved
    invert.edit.sigmas steps along it; <attr>.monotone_share = edits whose measured attribute rises at
    every step, <attr>.class_kept = edited images the judge still reads as the original's label. Writes
    OUT/metrics.json, OUT/directions.npz and OUT/pictures/: class_edits.png (one row per image, one column
    per class) and <attr>.png (one row per image, one column per step)."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.device import resolve_device
        from ganforge.errors import ConfigError

        p = load_params(params, "base", "invert")
        cfg = p.invert
        device = resolve_device(cfg.device)

        import numpy as np

        from ganforge.invert.run import editing, load_prior
        from ganforge.io import atomic_save_npz, atomic_write_bytes, atomic_write_json
        from ganforge.sampling import png_bytes

        G, _, judge = load_prior(model, evaluator, device)
        if G.channels != 1:
            raise ConfigError(f"invert.edit.attributes are stroke measures of grayscale digits; {model} "
                              f"draws {G.channels}-channel images")
        if not latents.exists():
            raise ConfigError(f"{latents} not found: run the invert stage first (dvc repro invert)")
        with np.load(latents) as f:
            z, found, labels = f["z"], f["found"], f["labels"]
        if z.ndim != 2 or z.shape[1] != G.z_dim:
            raise ConfigError(f"{latents}: latents of shape {list(z.shape)}, but {model} has z_dim "
                              f"{G.z_dim}: rerun the invert stage")
        from ganforge.tracking.store import Run  # mlflow: seconds to import, so after the cheap checks

        run = Run.attach(run_json)
        metrics, pictures, directions = editing(G, judge, z, found, labels, cfg, seed=p.base.seed,
                                                device=device)
        for name, picture in pictures.items():
            atomic_write_bytes(out / "pictures" / f"{name}.png", png_bytes(picture))
            run.log_image(picture, key=f"edit_{name}")
        atomic_save_npz(out / "directions.npz", **directions)
        atomic_write_json(out / "metrics.json", metrics)
        run.log_metrics({f"edit.{k}": float(v) for k, v in metrics.items() if v is not None})
        if "class_edit.accuracy" in metrics:
            print(f"edit: class edits read as the class asked for: {metrics['class_edit.accuracy']:.1%}")
        for a in cfg.edit.attributes:
            kept = metrics.get(f"{a}.class_kept")
            print(f"edit {a}: rises at every step in {metrics[f'{a}.monotone_share']:.1%} of edits, mean "
                  + " -> ".join(f"{metrics[f'{a}.mean_at_{s:g}']:.2f}" for s in cfg.edit.sigmas)
                  + ("" if kept is None else f", class kept {kept:.1%}"))


if __name__ == "__main__":
    app()
