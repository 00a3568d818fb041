"""DVC stage `judge@<set>` of the translate pipeline: a judge for each domain of a translation set."""

from __future__ import annotations

from pathlib import Path

import typer

from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def main(
    set_name: str = typer.Option(..., "--set", help="a key of translate.sets (emoji, digits, ...)"),
    params: Path = typer.Option(Path("params.yaml"), help="params file; reads base.seed, download (to "
                                "prepare a judged_on data set) and translate (device, sets.<set>)"),
) -> None:
    """Train one judge per domain of data/translate/<set>: the classifier of the domain's labels (or of the
    registry's judged_on data set, e.g. all 10 Animal-MNIST classes for horse-zebra), else SimCLR on the
    domain's train images. Writes models/translate/<set>-judge-{a,b}.pt and results/translate/<set>/judge/
    {reference-a.npz, reference-b.npz, metrics.json (each domain's real-data floor: as many of its train
    images against its test images; a classifier's test accuracy)}. Exit codes: 0 done, 2 bad params or
    data."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.device import resolve_device
        from ganforge.translate.run import judge, set_of

        p = load_params(params, "base", "download", "translate")
        set_of(p, set_name)
        m = judge(p, set_name, resolve_device(p.translate.device))
        for suffix in ("a", "b"):
            d = m[suffix]
            acc = f", accuracy {d['accuracy']:.2%}" if "accuracy" in d else ""
            print(f"{set_name} {d['domain']}: {d['kind']} judge, floor fid {d['floor']['fid']:.4g}{acc}")


if __name__ == "__main__":
    app()
