"""DVC stage `download`: fetch base.dataset and write data/<dataset>/{train,test}.npz + info.json."""

from __future__ import annotations

from pathlib import Path

import typer

from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, rich_markup_mode=None)

EPILOG = """Environment: GANFORGE_CACHE sets the download cache (default ~/.cache/ganforge; verified files
are kept there, so reruns do not download again). GANFORGE_REGISTRY names a YAML file that adds datasets or
overrides fields of known ones, e.g. `mnist: {mirrors: ["https://my.mirror/mnist/{file}.gz"]}`.
Exit codes: 0 ok, 1 download failed (one line per mirror says why), 2 bad params or unknown dataset."""


@app.command(epilog=EPILOG)
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file; reads base.dataset, base.seed and "
                                "the download section"),
    out: Path | None = typer.Option(None, help="output directory [default: data/<dataset>]"),
    dataset: str | None = typer.Option(None, help="the data set to fetch instead of base.dataset (the "
                                       "super-resolution pipeline's sets: superres.sets.<set>.dataset)"),
) -> None:
    """Fetch base.dataset (mnist, fashion-mnist, cifar10, histology, emoji, ...; folder reads your own) from
    its mirrors in order, verify every file's content hash, and write train.npz, test.npz (uint8 images
    [N,C,H,W], int64 labels) and info.json to OUT atomically: a failed run leaves nothing behind."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.data.download import download_dataset

        p = load_params(params, "base", "download")
        name = dataset or p.base.dataset
        out = out or Path("data") / name
        info = download_dataset(name, p.download, out, seed=p.base.seed)
        counts = ", ".join(f"{s} {n}" for s, n in info["counts"].items())
        print(f"{info['name']}: {counts} images of shape {info['shape']} -> {out} (from {info['source']})")


if __name__ == "__main__":
    app()
