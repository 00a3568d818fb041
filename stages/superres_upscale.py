"""DVC stage `superres-upscale@<set>`: the test images upscaled by bicubic, the psnr and the gan model; or
one image file of any size (--image, --out), in seam-free tiles."""

from __future__ import annotations

from pathlib import Path

import typer

from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def main(
    set_name: str = typer.Option(None, "--set", help="the stage: a key of superres.sets; its first test_n "
                                 "test images are downscaled and upscaled by each method"),
    params: Path = typer.Option(Path("params.yaml"), help="params file; reads superres (device, scale, "
                                "sets.<set>)"),
    image: Path = typer.Option(None, help="upscale this image file instead (PNG, JPEG, ...: any size; "
                               "grey or RGB as the model was trained)"),
    out: Path = typer.Option(None, help="with --image: the PNG to write"),
    model: Path = typer.Option(None, help="with --image: the SR model file, e.g. "
                               "models/superres/photos-gan.pt (or -psnr.pt: sharper in PSNR, blurrier)"),
    scale: int = typer.Option(None, help="with --image: the factor asked for; it must be the model's "
                              "(default: the model's)"),
    tile: int = typer.Option(128, help="with --image: LR pixels per tile side (bounds the memory); 0 = the "
                             "whole image at once"),
    overlap: int = typer.Option(None, help="with --image: LR pixels of context around each tile (default: "
                                "the model's receptive radius, which makes tiled output equal untiled)"),
    reference: Path = typer.Option(None, help="with --image: the true HR image, to print PSNR/SSIM (Y) of "
                                   "the output and of bicubic against it; its size must be the output's"),
) -> None:
    """The stage (--set): write results/superres/<set>/upscaled.npz (names; bicubic, psnr, gan: one stacked
    uint8 array per method when the test images share a size, else <method>/<name> per image).
    With --image: upscale that file by --model and write --out (PNG), nothing else. Exit 2: bad params, a
    non-image file, a --scale the model was not trained for, an image smaller than the tiles' overlap, a
    --reference of another size; nothing is written then."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.device import resolve_device
        from ganforge.errors import ConfigError

        if image is not None:
            if out is None or model is None:
                raise ConfigError("--image needs --out (the PNG to write) and --model (the SR model file)")
            from ganforge.superres.run import upscale_file

            said = upscale_file(image, out, model, scale=scale, tile=tile, overlap=overlap,
                                reference=reference)
            print(said)
            return
        if set_name is None:
            raise ConfigError("give --set (the stage: a key of superres.sets) or --image, --out and --model")
        from ganforge.superres.run import Paths, set_of, upscale

        p = load_params(params, "base", "superres")
        set_of(p, set_name)
        paths = Paths(set_name)
        upscale(p, set_name, data_dir=paths.data, models={s: paths.model(s) for s in ("psnr", "gan")},
                out=paths.upscaled, device=resolve_device(p.superres.device))
        print(f"{set_name}: test images upscaled by bicubic, psnr and gan -> {paths.upscaled}")


if __name__ == "__main__":
    app()
