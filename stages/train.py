"""DVC stage `train`: a GAN on the prepared data, tracked in MLflow, resumable from checkpoints/.

Writes models/generator.pt (G_ema when train.ema.enabled), results/train/{losses.tsv, samples.png,
run.json}. Rerunning after an interruption resumes from checkpoints/train.pt when its config matches
(train.resume: auto), or trains from step 0 whatever the checkpoint holds (train.resume: never).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file; reads base.seed, base.dataset and "
                                "the train section"),
    data: Path = typer.Option(..., help="prepared data directory (output of the download stage)"),
    model: Path = typer.Option(Path("models/generator.pt"), help="the generator file sample/evaluate read"),
    results: Path = typer.Option(Path("results/train"), help="directory for losses.tsv, samples.png, "
                                 "run.json"),
    checkpoints: Path = typer.Option(Path("checkpoints"), help="resumable checkpoints (persisted by DVC)"),
) -> None:
    """Train G and D; resume from CHECKPOINTS when the config matches, else start fresh. Exit codes: 0 done,
    1 training failed (e.g. diverged; the last good checkpoint is kept), 2 bad params or device, 130
    interrupted (the checkpoint is kept: rerun to resume)."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.device import resolve_device

        p = load_params(params, "base", "train")  # bad params or device: exit 2 before heavy imports
        cfg = p.train
        device = resolve_device(cfg.device)

        from ganforge.data.prepared import content_hash, load_info, load_split

        info = load_info(data, p.base.dataset)  # another dataset's directory: exit 2
        x_train, _ = load_split(data, "train")  # uint8 [N, C, H, W]

        from ganforge.io import atomic_write_bytes, atomic_write_text
        from ganforge.nets import save_generator
        from ganforge.sampling import png_bytes
        from ganforge.tracking.serving import log_generator_model
        from ganforge.tracking.store import open_training_run, params_hash
        from ganforge.train import history_tsv, train, trajectory_config
        from ganforge.train.checkpoint import CHECKPOINT_FILE, load_checkpoint

        data_hash = content_hash(info)
        args = dict(seed=p.base.seed, data_hash=data_hash, device=device, ema_enabled=cfg.ema.enabled,
                    ema_decay=cfg.ema.decay, **cfg.model_dump(exclude={"device", "ema", "resume"}))
        ckpt_path = checkpoints / CHECKPOINT_FILE
        ckpt = load_checkpoint(ckpt_path, trajectory_config(args)) if cfg.resume == "auto" else None
        if cfg.resume == "never" and ckpt_path.exists():
            print(f"train.resume is never: training from step 0 ({ckpt_path} will be replaced)")
        run_params = {"base": p.base.model_dump(), "train": cfg.model_dump()}
        run = open_training_run(run_params, ckpt["meta"] if ckpt else None,
                                run_name=_run_name(p),
                                tags={"dataset": p.base.dataset, "dataset_hash": data_hash})
        run.log_dataset(p.base.dataset, data_hash, source=str(data.resolve()), context="train",
                        profile={"train_images": len(x_train), "shape": list(x_train.shape[1:])})
        meta = {"params_hash": params_hash(run_params), "mlflow_run_id": run.run_id}
        print(f"device {device}, {len(x_train)} train images, MLflow run {run.run_id} "
              f"in {run.client.tracking_uri}")
        run.write_json(results / "run.json")

        def log(step: int, stats: dict) -> None:
            run.log_metrics(stats, step=step)
            if not sys.stderr.isatty():  # no live progress bar: leave one line per report in the log
                print(f"step {step}  " + "  ".join(f"{k} {v:.4g}" for k, v in stats.items()), flush=True)

        try:
            result = train(x_train, **args, checkpoint_path=ckpt_path, resume=ckpt, checkpoint_meta=meta,
                           log=log, log_grid=lambda step, grid: run.log_image(grid, "samples_fixed_z", step),
                           progress=sys.stderr.isatty())
        except KeyboardInterrupt:
            run.finish("KILLED")
            raise
        except BaseException:
            run.finish("FAILED")
            raise

        ema = result.G_ema is not None
        save_generator(model, result.G_ema if ema else result.G, meta={
            "weights": "G_ema" if ema else "G", "ema": ema, "dataset": p.base.dataset, "data_hash": data_hash,
            "loss": cfg.loss, "seed": p.base.seed, "step": result.step, "kimg": result.kimg,
            "mlflow_run_id": run.run_id})
        atomic_write_text(results / "losses.tsv", history_tsv(result.history))
        atomic_write_bytes(results / "samples.png", png_bytes(result.grid))
        # a new version of ganforge-<dataset> in the model registry; evaluate decides if it becomes champion
        version = log_generator_model(run, model, p.base.dataset)
        run.finish("FINISHED")
        print(f"registered {model} as version {version} of ganforge-{p.base.dataset}")
        print(f"trained {result.kimg:g} kimg ({result.step} steps); wrote {model} and {results}/")


def _run_name(p) -> str:
    """What the runs table shows: dataset, loss and length, then the DVC experiment when there is one."""
    import os

    name = f"{p.base.dataset}-{p.train.loss}-{p.train.kimg:g}kimg"
    return f"{name}-{os.environ['DVC_EXP_NAME']}" if os.environ.get("DVC_EXP_NAME") else name


if __name__ == "__main__":
    app()
