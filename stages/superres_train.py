"""DVC stage `superres-psnr@<set>` / `superres-gan@<set>`: SRResNet for PSNR, then its GAN fine-tuning."""

from __future__ import annotations

from pathlib import Path

import typer

from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def main(
    set_name: str = typer.Option(..., "--set", help="a key of superres.sets (photos, mnist, ...)"),
    stage: str = typer.Option(..., help="psnr (L1 from bicubic) or gan (from the psnr model: the "
                              "adversarial loss, L1 and the judge's perceptual term)"),
    params: Path = typer.Option(Path("params.yaml"), help="params file; reads base.seed and superres "
                                "(device, scale, log/image/ckpt_every, sets.<set>)"),
) -> None:
    """Train on random HR crops (crop px, flips and quarter turns with augment) of the set's train images,
    their LR images by bicubic downscaling with antialiasing. Resumes checkpoints-superres/<set>-<stage>/
    when its config matches; SIGTERM or Ctrl-C checkpoint the step and exit 143 / 130 (rerun to resume).
    Writes models/superres/<set>-<stage>.pt (the EMA weights when ema is set) and
    results/superres/<set>/<stage>/{losses.tsv, crops.png (LR | bicubic | SR | HR), run.json}; registers
    the model as a version of ganforge-<set>-sr. Exit codes: 0 done, 1 failed (e.g. diverged: the last
    good checkpoint is kept), 2 bad params, data or model files."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.device import resolve_device
        from ganforge.errors import ConfigError
        from ganforge.superres.run import STAGES, Paths, set_of, train

        if stage not in STAGES:
            raise ConfigError(f"--stage {stage!r}: psnr or gan")
        p = load_params(params, "base", "superres")
        set_of(p, set_name)
        paths = Paths(set_name)
        train(p, set_name, stage, data_dir=paths.data, model=paths.model(stage), results=paths.results(stage),
              checkpoints=paths.checkpoints(stage), judge_model=paths.judge_model,
              init_model=paths.model("psnr") if stage == "gan" else None,
              device=resolve_device(p.superres.device))


if __name__ == "__main__":
    app()
