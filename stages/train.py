"""Train stage: a DCGAN on the prepared data, tracked in MLflow, resumable from checkpoints/.

Writes models/generator.pt (G_ema when train.ema.enabled), results/train/{losses.tsv, samples.png,
run.json}. Rerunning after an interruption resumes from checkpoints/train.pt when its config matches.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, help=__doc__)
TSV_COLUMNS = ("step", "kimg", "loss_d", "loss_g", "d_real", "d_fake", "img_per_s")


@app.command()
def main(
    params: Path = typer.Option("params.yaml", help="params file (reads base.seed, base.dataset, train)"),
    data: Path = typer.Option(..., help="prepared data directory (output of the download stage)"),
    model: Path = typer.Option("models/generator.pt", help="the generator file sample/evaluate read"),
    results: Path = typer.Option("results/train", help="directory for losses.tsv, samples.png, run.json"),
    checkpoints: Path = typer.Option("checkpoints", help="resumable checkpoints (persisted by DVC)"),
) -> None:
    """Train G and D; resume from CHECKPOINTS when the config matches, else start fresh."""
    from ganforge.cli import user_errors

    with user_errors():
        from ganforge.config import load_params
        from ganforge.io import resolve_device

        p = load_params(params)  # bad params or an absent device: exit 2 before the heavy imports
        t = p.train
        device = resolve_device(t.device)

        from ganforge.data.prepared import content_hash, load_info, load_split
        from ganforge.io import atomic_write_bytes, atomic_write_text
        from ganforge.nets import save_generator
        from ganforge.sampling import png_bytes
        from ganforge.tracking import Run, log_generator_model, params_hash
        from ganforge.train import train, trajectory_config
        from ganforge.train.checkpoint import CHECKPOINT_FILE, load_checkpoint

        x_train, _ = load_split(data, "train")  # uint8 [N, C, H, W]
        data_hash = content_hash(load_info(data))
        args = dict(seed=p.base.seed, data_hash=data_hash, device=device, ema_enabled=t.ema.enabled,
                    ema_decay=t.ema.decay, **t.model_dump(exclude={"device", "ema"}))
        ckpt_path = checkpoints / CHECKPOINT_FILE
        ckpt = load_checkpoint(ckpt_path, trajectory_config(args))
        # Continue the checkpoint's MLflow run only if its logged params still hold (MLflow params are
        # immutable: a longer kimg continues the weights but gets a run of its own).
        run_params = {"base": p.base.model_dump(), "train": t.model_dump()}
        meta = {"params_hash": params_hash(run_params)}
        old_id = ckpt["meta"].get("mlflow_run_id") if ckpt else None
        same = ckpt is not None and ckpt["meta"].get("params_hash") == meta["params_hash"]
        run = Run.resume(old_id) if old_id and same else None
        if old_id and run is None:
            print(f"logging to a new MLflow run (the checkpoint's run {old_id} is gone or had other params)")
        if run is None:
            tags = {"dataset": p.base.dataset, "dataset_hash": data_hash}
            if old_id:
                tags["continues_run"] = old_id
            run = Run.start("ganforge", run_params, tags=tags)
        meta["mlflow_run_id"] = run.run_id
        print(f"device {device}, {len(x_train)} train images, MLflow run {run.run_id} "
              f"in {run.client.tracking_uri}")
        run.write_json(results / "run.json")

        def log(step: int, stats: dict) -> None:
            run.log_metrics(stats, step=step)
            if not sys.stderr.isatty():  # no live progress bar: leave one line per report in the log
                print(f"step {step}  " + "  ".join(f"{k} {v:.4g}" for k, v in stats.items()), flush=True)

        def log_grid(step: int, grid) -> None:
            run.log_image(grid, key="samples_fixed_z", step=step)

        try:
            result = train(x_train, **args, checkpoint_path=ckpt_path, resume=ckpt, checkpoint_meta=meta,
                           log=log, log_grid=log_grid, progress=sys.stderr.isatty())
        except KeyboardInterrupt:
            run.finish("KILLED")
            raise
        except BaseException:
            run.finish("FAILED")
            raise

        ema = result.G_ema is not None
        save_generator(model, result.G_ema if ema else result.G, meta={
            "weights": "G_ema" if ema else "G", "ema": ema, "dataset": p.base.dataset, "data_hash": data_hash,
            "loss": t.loss, "seed": p.base.seed, "step": result.step, "kimg": result.kimg,
            "mlflow_run_id": run.run_id})
        rows = [TSV_COLUMNS] + [[f"{r[c]:.6g}" if isinstance(r[c], float) else str(r[c]) for c in TSV_COLUMNS]
                                for r in result.history]
        atomic_write_text(results / "losses.tsv", "".join("\t".join(row) + "\n" for row in rows))
        atomic_write_bytes(results / "samples.png", png_bytes(result.grid))
        # a new version of ganforge-<dataset> in the model registry; evaluate decides if it becomes champion
        version = log_generator_model(run, model, p.base.dataset)
        run.finish("FINISHED")
        print(f"registered {model} as version {version} of ganforge-{p.base.dataset}")
        print(f"trained {result.kimg:g} kimg ({result.step} steps); wrote {model} and {results}/")


if __name__ == "__main__":
    app()
