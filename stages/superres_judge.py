"""DVC stage `superres-judge@<set>`: the set's judge, its reference patches and real-data floor."""

from __future__ import annotations

from pathlib import Path

import typer

from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def main(
    set_name: str = typer.Option(..., "--set", help="a key of superres.sets (photos, mnist, ...)"),
    params: Path = typer.Option(Path("params.yaml"), help="params file; reads base.seed and "
                                "superres.sets.<set> (dataset, judge, test_n)"),
) -> None:
    """Train the judge of the set on its train images (judge.kind: classifier on whole labelled images, or
    SimCLR on judge.n random HR crops of judge.crop px), then cache its features of the HR test patches
    (a grid of judge.crop crops of each of the first test_n test images; whole digits) and measure the
    real-data floor: FID of HR train patches against them. Writes models/superres/<set>-judge.pt and
    results/superres/<set>/judge/{reference.npz, metrics.json}. Exit 2: bad params or data."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.device import resolve_device
        from ganforge.superres.run import Paths, judge, set_of

        p = load_params(params, "base", "superres")
        set_of(p, set_name)
        paths = Paths(set_name)
        m = judge(p, set_name, paths.data, paths.judge_model, paths.judge_results,
                  resolve_device(p.superres.device))
        acc = f", accuracy {m['accuracy']:.2%}" if "accuracy" in m else ""
        print(f"{set_name} judge ({m['kind']}): floor FID {m['floor']['fid']:.4g} over {m['patches']} "
              f"test patches of {m['patch_side']} px{acc} -> {paths.judge_model}")


if __name__ == "__main__":
    app()
