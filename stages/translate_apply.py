"""DVC stage `translate@<model>` of the translate pipeline: the held-out images, in each direction."""

from __future__ import annotations

from pathlib import Path

import typer

from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def main(
    model: str = typer.Option(..., help="a key of translate.models"),
    params: Path = typer.Option(Path("params.yaml"), help="params file; reads translate (device, "
                                "models.<model>: set, directions; its set's channels, test_n)"),
) -> None:
    """Translate the test split of each source domain in every direction of translate.models.<model>
    .directions (ab: A -> B; ba: B -> A, CycleGAN only) and, where the model has the way back, translate
    the result back (the cycle). Writes results/translate/<model>/translated.npz. Exit codes: 0 done, 2 bad
    params, data or model file (e.g. one trained on other data: rerun train@<model>)."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.device import resolve_device
        from ganforge.translate.run import ModelPaths, model_of, translate

        p = load_params(params, "base", "translate")
        model_of(p, model)
        shapes = translate(p, model, resolve_device(p.translate.device))
        print(f"{model}: " + ", ".join(f"{k} {v}" for k, v in shapes.items() if not k.startswith("names_"))
              + f" -> {ModelPaths(model).translated}")


if __name__ == "__main__":
    app()
