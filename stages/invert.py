"""DVC stage `invert`: project the fixed test sample into the generator's latent space."""

from __future__ import annotations

from pathlib import Path

import typer

from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file; reads base.seed and the invert "
                                "section (n, batch_size, device, project)"),
    data: Path = typer.Option(..., help="prepared data directory: the first invert.n test images are "
                              "projected"),
    model: Path = typer.Option(Path("models/generator.pt"), help="the trained generator (the prior)"),
    evaluator: Path = typer.Option(Path("models/evaluator.pt"), help="the judge: its features carry the "
                                   "perceptual term, its classifier reads the reconstructions"),
    run_json: Path = typer.Option(Path("results/train/run.json"), "--run", help="the training's MLflow run "
                                  "(metrics and pictures are logged there)"),
    out: Path = typer.Option(Path("results/invert"), help="directory for metrics.json, latents.npz and "
                             "reconstructions.png"),
) -> None:
    """Find each test image's latent z (and, conditional G, its class) by invert.project: a warm start from
    the nearest of invert.project.bank G samples, then Adam on z against the pixel distance, the judge's
    feature distance and the Gaussian prior (ganforge.invert.projector). Writes OUT/latents.npz (z float32
    [n, z_dim], found int64 [n]: the class found, -1 unconditional, labels: the test labels),
    OUT/metrics.json (psnr of the reconstructions in dB, accuracy: the classifier judge reads a
    reconstruction as the original's label, beside accuracy_of_originals: how often it reads the originals so;
    class_found) and OUT/reconstructions.png (originals above their
    reconstructions)."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.device import resolve_device

        p = load_params(params, "base", "invert")
        cfg = p.invert
        device = resolve_device(cfg.device)

        from ganforge.invert.run import inversion, load_prior, load_targets
        from ganforge.io import atomic_save_npz, atomic_write_bytes, atomic_write_json
        from ganforge.metrics.evaluator import progress_bar
        from ganforge.sampling import png_bytes

        G, _, judge = load_prior(model, evaluator, device)
        x, y = load_targets(data, cfg.n, G)
        from ganforge.tracking.store import Run  # mlflow: seconds to import, so after the cheap checks

        run = Run.attach(run_json)
        with progress_bar(True, "invert", len(x)) as advance:
            P, metrics, picture = inversion(G, judge, x, y, cfg, seed=p.base.seed, device=device,
                                            progress=advance)
        atomic_save_npz(out / "latents.npz", z=P.z, found=P.labels, labels=y)
        atomic_write_json(out / "metrics.json", metrics)
        atomic_write_bytes(out / "reconstructions.png", png_bytes(picture))
        run.log_metrics({f"invert.{k}": v for k, v in metrics.items() if v is not None})
        run.log_image(picture, key="invert_reconstructions")
        acc = ("" if metrics["accuracy"] is None
               else f", the judge reads {metrics['accuracy']:.1%} as the original's class")
        print(f"invert: {len(x)} test images, PSNR {metrics['psnr']:.2f} dB{acc} -> {out}")


if __name__ == "__main__":
    app()
