"""DVC stage `inpaint`: fill holes in the fixed test sample by masked inversion, beside two baselines; or
inpaint one image of your own (--image, --mask, --out)."""

from __future__ import annotations

from pathlib import Path

import typer

from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file; reads base.seed, base.dataset (the "
                                "registered model's name) and the invert section (n, batch_size, device, "
                                "project, inpaint)"),
    data: Path = typer.Option(None, help="prepared data directory: the first invert.n test images are "
                              "inpainted, the train images are the nearest-image baseline's memory"),
    model: Path = typer.Option(Path("models/generator.pt"), help="the trained generator (the prior)"),
    evaluator: Path = typer.Option(Path("models/evaluator.pt"), help="the judge (perceptual term; its "
                                   "classifier reads the inpainted images)"),
    run_json: Path = typer.Option(Path("results/train/run.json"), "--run", help="the training's MLflow run "
                                  "(metrics and pictures are logged there)"),
    out: Path = typer.Option(Path("results/inpaint"), help="the stage: directory for metrics.json, "
                             "table.tsv and pictures/<mask>.png; with --image: the inpainted PNG to write"),
    image: Path = typer.Option(None, help="inpaint this PNG instead (the generator's size and channels)"),
    mask: Path = typer.Option(None, help="with --image: a PNG of the same size, white (>= 128) = hole"),
) -> None:
    """For every mask kind of invert.inpaint.masks (centre square, random boxes, thin/medium/thick
    strokes; mask i seeded by base.seed and i), fill the holes of the first invert.n test images three
    ways: gan (masked inversion: the projector sees only the known pixels, the hole comes from G),
    biharmonic (scikit-image's inpaint_biharmonic) and nearest (the hole's pixels from the train image
    nearest over the known pixels). Known pixels are never changed. Writes OUT/metrics.json
    (<mask>.<method>.accuracy: the classifier judge reads the original's label; <mask>.<method>.hole_psnr
    in dB over the hole; accuracy_of_originals: the judge on the images without a hole), OUT/table.tsv
    (the same per hole-share bin of invert.inpaint.bins) and OUT/pictures/<mask>.png (rows: input with the
    hole grey, gan, biharmonic, nearest, original), and registers the generator with the judge and
    invert.project as a new version of ganforge-<base.dataset>-inpaint, an MLflow model that answers
    inpainting requests (rows of image and mask).
    With --image and --mask: inpaint that one image by masked inversion and write the PNG to --out."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.device import resolve_device
        from ganforge.errors import ConfigError

        p = load_params(params, "base", "invert")
        cfg = p.invert
        device = resolve_device(cfg.device)
        if (image is None) != (mask is None):
            raise ConfigError("--image and --mask go together: the image to inpaint and its hole mask")
        if image is None and data is None:
            raise ConfigError("--data is required (the test sample to inpaint), or give --image and --mask")

        from ganforge.invert.run import load_prior
        from ganforge.io import atomic_write_bytes

        G, _, judge = load_prior(model, evaluator, device)
        if image is not None:
            from ganforge.invert.run import inpaint_file

            atomic_write_bytes(out, inpaint_file(G, judge, image, mask, cfg, seed=p.base.seed, device=device))
            print(f"inpaint: {image} with the hole of {mask} -> {out}")
            return

        from ganforge.data.prepared import load_split
        from ganforge.invert.run import inpainting, load_targets, write_table
        from ganforge.io import atomic_write_json
        from ganforge.metrics.evaluator import progress_bar
        from ganforge.sampling import png_bytes

        x, y = load_targets(data, cfg.n, G)
        x_train = load_split(data, "train")[0]
        from ganforge.tracking.store import Run  # mlflow: seconds to import, so after the cheap checks

        run = Run.attach(run_json)
        with progress_bar(True, "inpaint", len(x) * len(cfg.inpaint.masks)) as advance:
            metrics, rows, pictures = inpainting(G, judge, x, y, x_train, cfg, seed=p.base.seed,
                                                 device=device, progress=advance)
        for kind, picture in pictures.items():
            atomic_write_bytes(out / "pictures" / f"{kind}.png", png_bytes(picture))
            run.log_image(picture, key=f"inpaint_{kind}")
        write_table(out / "table.tsv", rows)
        atomic_write_json(out / "metrics.json", metrics)
        run.log_metrics({f"inpaint.{k}": v for k, v in metrics.items() if v is not None})
        run.log_artifact(out / "table.tsv", "inpaint")
        from ganforge.tracking.serving import inpainting_model_name, log_inpainting_model

        version = log_inpainting_model(run, model, evaluator, p.base.dataset, cfg.project.model_dump())
        for kind in cfg.inpaint.masks:
            acc = {m: metrics[f"{kind}.{m}.accuracy"] for m in ("gan", "biharmonic", "nearest")}
            db = {m: metrics[f"{kind}.{m}.hole_psnr"] for m in ("gan", "biharmonic", "nearest")}
            read = "" if acc["gan"] is None else " accuracy " + " / ".join(f"{v:.1%}" for v in acc.values())
            print(f"inpaint {kind} (hole {metrics[f'{kind}.hole_share']:.0%}): gan / biharmonic / nearest"
                  f"{read}, hole PSNR " + " / ".join(f"{v:.2f}" for v in db.values()) + " dB")
        print(f"registered the inpainting model as version {version} of "
              f"{inpainting_model_name(p.base.dataset)}")


if __name__ == "__main__":
    app()
