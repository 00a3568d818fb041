"""DVC stage `train@<model>` of the translate pipeline: pix2pix or CycleGAN through the one engine."""

from __future__ import annotations

from pathlib import Path

import typer

from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def main(
    model: str = typer.Option(..., help="a key of translate.models (emoji-cyclegan, emoji-pix2pix, ...)"),
    params: Path = typer.Option(Path("params.yaml"), help="params file; reads base.seed and translate "
                                "(device, log/image/ckpt_every, models.<model>, its set)"),
) -> None:
    """Train the model on its set's train split (pix2pix: the pairs; CycleGAN: each domain drawn on its
    own). Resumes checkpoints-translate/<model>/ when its config matches; SIGTERM or Ctrl-C checkpoint the
    step and exit 143 / 130 (rerun to resume). Writes models/translate/<model>.pt (both directions'
    generators; the EMA weights when ema is set) and results/translate/<model>/train/{losses.tsv,
    translations.png (held-out A | A->B | B [| B->A]), run.json}; registers the model as a version of
    ganforge-<model>-translate. Exit codes: 0 done, 1 failed (e.g. diverged: the last good checkpoint is
    kept), 2 bad params or data."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.device import resolve_device
        from ganforge.translate.run import model_of, train

        p = load_params(params, "base", "translate")
        model_of(p, model)
        train(p, model, resolve_device(p.translate.device))


if __name__ == "__main__":
    app()
