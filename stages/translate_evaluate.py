"""DVC stage `evaluate@<model>` of the translate pipeline: the model beside the identity baseline."""

from __future__ import annotations

from pathlib import Path

import typer

from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def main(
    model: str = typer.Option(..., help="a key of translate.models"),
    params: Path = typer.Option(Path("params.yaml"), help="params file; reads translate (device, "
                                "models.<model>, its set: ground_truth, channels, test_n)"),
) -> None:
    """Score each direction's translations, and the untranslated input (the identity baseline), in the
    target domain's judge: fid and fid_ratio (fid / the judge's real-data floor); with labels, the share
    whose label the target's classifier reads unchanged (labels_kept) or, when the domains are classes
    (horse, zebra), the share it reads as the target's class (reads_as_target); with ground_truth, PSNR
    and SSIM against the true counterparts (scikit-image); for CycleGAN the cycle PSNR. Writes
    results/translate/<model>/evaluate/{metrics.json, table.tsv, pictures.png (input | output [| truth])}
    and logs them to the training's MLflow run."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.device import resolve_device
        from ganforge.translate.run import ModelPaths, evaluate, model_of

        p = load_params(params, "base", "translate")
        m = model_of(p, model)
        metrics = evaluate(p, model, resolve_device(p.translate.device))
        from ganforge.tracking.store import Run  # mlflow: seconds to import, so after the work

        paths = ModelPaths(model)
        run = Run.attach(paths.train / "run.json")
        run.log_metrics({f"translate.{d}.{method}.{k}": v for d in m.directions
                         for method, row in metrics[d].items() if isinstance(row, dict)
                         for k, v in row.items()})
        run.log_artifact(paths.evaluate / "pictures.png", "translate")
        for d in m.directions:
            for method in ("identity", m.model):
                row = metrics[d][method]
                print(f"{model} {d} {method:9s} " + "  ".join(f"{k} {v:.4g}" for k, v in row.items()))


if __name__ == "__main__":
    app()
