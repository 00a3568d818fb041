"""DVC stage `superres-evaluate@<set>`: bicubic, SRResNet and SRGAN side by side on the held-out images."""

from __future__ import annotations

from pathlib import Path

import typer

from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def main(
    set_name: str = typer.Option(..., "--set", help="a key of superres.sets (photos, mnist, ...)"),
    params: Path = typer.Option(Path("params.yaml"), help="params file; reads superres (device, scale, "
                                "sets.<set>: dataset, judge.crop, test_n)"),
) -> None:
    """Score each method's upscaled test images against the HR originals: psnr_y, ssim_y (BT.601 luma,
    the scale cropped from every border, BasicSR's conventions), psnr_rgb; fid of their patches in the
    set's judge against the HR test patches and fid_ratio = fid / the judge's real-data floor; for a
    labelled set the judge's accuracy on the upscaled images (and on the HR ones). Writes
    results/superres/<set>/evaluate/{metrics.json, table.tsv, perception_distortion.tsv,
    perception_distortion.png, crops.png} and logs them to the gan training's MLflow run."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.device import resolve_device
        from ganforge.superres.run import METHODS, Paths, evaluate, set_of

        p = load_params(params, "base", "superres")
        set_of(p, set_name)
        paths = Paths(set_name)
        m = evaluate(p, set_name, data_dir=paths.data, upscaled=paths.upscaled, judge_model=paths.judge_model,
                     judge_results=paths.judge_results, out=paths.evaluate,
                     device=resolve_device(p.superres.device))
        from ganforge.tracking.store import Run  # mlflow: seconds to import, so after the work

        run = Run.attach(paths.results("gan") / "run.json")
        run.log_metrics({f"superres.{k}.{c}": v for k in (*METHODS, "hr") if k in m for c, v in m[k].items()})
        for picture in ("perception_distortion.png", "crops.png"):
            run.log_artifact(paths.evaluate / picture, "superres")
        for k in METHODS:
            row = m[k]
            acc = f"  accuracy {row['accuracy']:.2%}" if "accuracy" in row else ""
            print(f"{set_name} {k:8s} psnr_y {row['psnr_y']:.2f} dB  ssim_y {row['ssim_y']:.4f}  "
                  f"fid_ratio {row['fid_ratio']:.3g}{acc}")


if __name__ == "__main__":
    app()
