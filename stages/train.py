"""DVC stage `train`: a GAN on the prepared data, tracked in MLflow, resumable from checkpoints/.

Writes models/generator.pt (G_ema when train.ema.enabled; with train.eval on, the snapshot with the best
in-training FID), results/train/{losses.tsv, eval.tsv, samples.png, run.json}. Rerunning after an
interruption resumes from checkpoints/train.pt when its config matches
(train.resume: auto), or trains from step 0 whatever the checkpoint holds (train.resume: never).
With train.nproc > 1 it execs `torchrun --nproc-per-node N` on this same command line: N processes train in
step (DDP, ganforge.train.distributed); rank 0 alone tracks and writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, rich_markup_mode=None)
WAIT_FOR_STORE_SECONDS = 300  # at the end of training, how long to wait for a tracking store that is down


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file; reads base.seed, base.dataset and "
                                "the train section"),
    data: Path = typer.Option(..., help="prepared data directory (output of the download stage)"),
    model: Path = typer.Option(Path("models/generator.pt"), help="the generator file sample/evaluate read"),
    results: Path = typer.Option(Path("results/train"), help="directory for losses.tsv, eval.tsv, "
                                 "samples.png, interpolation.png, interpolation.gif, run.json"),
    checkpoints: Path = typer.Option(Path("checkpoints"), help="resumable checkpoints (persisted by DVC)"),
    evaluator: Path = typer.Option(Path("models/evaluator.pt"), help="the judge of the in-training "
                                   "evaluation (train.eval.every_kimg > 0)"),
    evaluator_results: Path = typer.Option(Path("results/evaluator"), help="its reference.npz"),
) -> None:
    """Train G and D; resume from CHECKPOINTS when the config matches, else start fresh. SIGTERM or Ctrl-C:
    the current step is finished and checkpointed, the MLflow run is marked KILLED, and a rerun resumes
    there (a second signal stops at once, keeping the previous checkpoint). Exit codes: 0 done, 1 training
    failed (e.g. diverged; the last good checkpoint is kept), 2 bad params or device, 130 Ctrl-C, 143
    SIGTERM. With train.nproc > 1 this command replaces itself by torchrun running it in train.nproc
    processes (several nodes: torchrun's PET_* variables, see the README); torchrun then exits 1 when any
    process fails."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.device import resolve_device
        from ganforge.errors import ConfigError

        p = load_params(params, "base", "train", "evaluate")  # bad params/device: exit 2 before heavy imports
        cfg = p.train
        device = resolve_device(cfg.device)

        from ganforge.train.distributed import exec_torchrun, join, launched, resolve_nproc

        nproc = resolve_nproc(cfg.nproc, device)  # more than the visible GPUs: exit 2
        if nproc > 1 and not launched():  # this same command in nproc processes under torchrun (no return)
            exec_torchrun(nproc, cfg.batch_size, sys.argv)
        world = join(device)  # rank 0 of 1, or this process's rank in torchrun's process group

        from ganforge.data.prepared import content_hash, is_points, load_info, load_split

        info = load_info(data, p.base.dataset)  # another dataset's directory: exit 2
        x_train, y_train = load_split(data, "train")  # uint8 [N, C, H, W], int64 [N]
        classes = list(info.get("classes", []))
        if cfg.conditional and len(classes) < 2:
            raise ConfigError(f"train.conditional is true but {data} has no labels ({len(classes)} class: a "
                              "flat image folder): arrange the images in one sub-folder per class, or set "
                              "train.conditional: false")

        from ganforge.cli import GracefulStop, Interrupted
        from ganforge.errors import GanforgeError
        from ganforge.io import atomic_write_bytes, atomic_write_text
        from ganforge.losses import constraint_warning
        from ganforge.metrics import Reference, Settings, in_training_evaluation, load_evaluator
        from ganforge.nets import save_generator
        from ganforge.plane import extent_of, gif_bytes, walk_pictures
        from ganforge.sampling import interpolation, interpolation_pictures, png_bytes
        from ganforge.tracking.serving import log_generator_model
        from ganforge.tracking.spool import TrainingLog
        from ganforge.tracking.store import open_training_run, params_hash
        from ganforge.train import Stopped, history_tsv, train, train_kwargs, trajectory_config
        from ganforge.train.checkpoint import CHECKPOINT_FILE, load_checkpoint
        from ganforge.train.loop import PLANE_POINTS

        data_hash = content_hash(info)
        args = train_kwargs(p, data_hash, device, resolution=x_train.shape[-1])
        evaluate = None  # train.eval: FID/precision/recall in the evaluator stage's features
        if args["eval_every"] and world.main:
            evaluate = in_training_evaluation(load_evaluator(evaluator, device)[0],
                                              Reference.load(evaluator_results / "reference.npz"),
                                              Settings.of(p.evaluate, seed=p.base.seed, device=device),
                                              seed=p.base.seed)
        warning = constraint_warning(cfg.loss, cfg.reg.kind, cfg.spectral_norm.d)
        if warning and world.main:
            print(f"warning: {warning}")
        ckpt_path = checkpoints / CHECKPOINT_FILE
        # rank 0 reads the checkpoint and hands it to the others (other nodes need not have the file)
        resume = cfg.resume == "auto" and world.main
        ckpt = world.from_main(load_checkpoint(ckpt_path, trajectory_config(args)) if resume else None)
        if not world.main:  # the other ranks train in step with rank 0, which alone tracks and writes
            with GracefulStop() as stop:
                try:
                    train(x_train, y_train, len(classes), **args, checkpoint_path=ckpt_path, resume=ckpt,
                          world=world,
                          stop=lambda: stop.requested, progress=False)
                except Stopped as e:
                    raise SystemExit(e.exit_code) from None  # rank 0 says what happened
            return
        if cfg.resume == "never" and ckpt_path.exists():
            print(f"train.resume is never: training from step 0 ({ckpt_path} will be replaced)")
        run_params = {"base": p.base.model_dump(), "train": cfg.model_dump()}
        run = open_training_run(run_params, ckpt["meta"] if ckpt else None,
                                run_name=_run_name(p),
                                tags={"dataset": p.base.dataset, "dataset_hash": data_hash,
                                      "world_size": str(world.size)})
        run.log_dataset(p.base.dataset, data_hash, source=str(data.resolve()), context="train",
                        profile={"train_images": len(x_train), "shape": list(x_train.shape[1:])})
        meta = {"params_hash": params_hash(run_params), "mlflow_run_id": run.run_id}
        print(f"device {device}, {world.size} process(es), {len(x_train)} train images, "
              f"MLflow run {run.run_id} in {run.client.tracking_uri}")
        run.write_json(results / "run.json")
        tracked = TrainingLog(run, checkpoints)  # best effort: an outage spools, never stops training
        if ckpt:
            tracked.replay(ckpt["history"])  # reports the checkpoint holds but the store may have missed

        def log(step: int, stats: dict) -> None:
            tracked.metrics(step, stats)
            if not sys.stderr.isatty():  # no live progress bar: leave one line per report in the log
                print(f"step {step}  " + "  ".join(f"{k} {v:.4g}" for k, v in stats.items()), flush=True)

        points = is_points(x_train)
        frames = []  # 2-D data: the GAN-Lab pictures of this process, for results/train/training.gif

        def log_grid(step: int, picture) -> None:
            tracked.image(step, "decision_surface" if points else "samples_fixed_z", picture)
            if points:
                frames.append(picture)

        try:
            with GracefulStop() as stop:  # SIGTERM/SIGINT: finish the step, checkpoint it, then stop
                result = train(x_train, y_train, len(classes), **args, evaluate=evaluate,
                               checkpoint_path=ckpt_path, resume=ckpt, checkpoint_meta=meta, log=log,
                               log_grid=log_grid,
                               stop=lambda: stop.requested, progress=sys.stderr.isatty(), world=world)
        except Stopped as e:
            tracked.flush(wait_seconds=5)  # inside the grace period a scheduler gives
            run.close("KILLED", {"ganforge.stopped_by": e.signal_name, "ganforge.stopped_at_step": e.step})
            raise Interrupted(e.exit_code - 128, str(e)) from None
        except KeyboardInterrupt:  # a second signal, or one before training started
            run.close("KILLED")
            raise
        except BaseException:
            run.close("FAILED")
            raise

        ema = result.G_ema is not None
        G_out = result.G_ema if ema else result.G
        snapshot = {"step": result.step, "kimg": result.kimg}  # the last weights, unless evaluation chose
        if result.best is not None:
            G_out.load_state_dict(result.best["G"])
            snapshot = {k: result.best[k] for k in ("step", "kimg", "fid")}
        save_generator(model, G_out, meta={
            "weights": "G_ema" if ema else "G", "ema": ema, "dataset": p.base.dataset, "data_hash": data_hash,
            "arch": cfg.arch, "loss": cfg.loss, "seed": p.base.seed, "trained_steps": result.step,
            "trained_kimg": result.kimg, **snapshot, "mlflow_run_id": run.run_id,
            **({"classes": classes} if cfg.conditional else {})})  # class names: sample/evaluate check them
        run.write_json(results / "run.json", snapshot={"best" if result.best else "last": snapshot})
        atomic_write_text(results / "eval.tsv", history_tsv(result.evals) if result.evals else "step\tfid\n")
        if result.best is not None:
            run.set_tags({f"best.{k}": v for k, v in snapshot.items()})
            print(f"kept the snapshot with the best in-training FID: step {snapshot['step']} "
                  f"({snapshot['kimg']:g} kimg), fid {snapshot['fid']:.4g}")
        atomic_write_text(results / "losses.tsv", history_tsv(result.history))
        atomic_write_bytes(results / "samples.png", png_bytes(result.grid))
        # latent walks of the generator file's G (slerp between seeds; conditional: classes); 2-D: the plane
        walks = interpolation(G_out.eval(), p.base.seed, device=device)
        real = x_train[:PLANE_POINTS]
        strip, gif = walk_pictures(walks, real, extent_of(real)) if points else interpolation_pictures(walks)
        atomic_write_bytes(results / "interpolation.png", png_bytes(strip))
        atomic_write_bytes(results / "interpolation.gif", gif)
        if frames:  # every image_every steps since this process started (a resumed run: since the resume)
            atomic_write_bytes(results / "training.gif", gif_bytes(frames))
            run.log_artifact(results / "training.gif")
        if not tracked.flush(wait_seconds=WAIT_FOR_STORE_SECONDS):
            raise GanforgeError(f"training finished and {model} is written, but the tracking store has been "
                                f"unreachable for {WAIT_FOR_STORE_SECONDS} s: its points wait in "
                                f"{tracked.spool}; rerun `dvc repro` when it is back to send them and "
                                "register the model")
        if tracked.images_lost:
            print(f"warning: {tracked.images_lost} sample grid(s) could not be logged during an outage "
                  f"(the last one is {results}/samples.png)")
        run.log_image(strip, key="interpolation")
        run.log_artifact(results / "interpolation.gif")
        # a new version of ganforge-<dataset> in the model registry; evaluate decides if it becomes champion
        version = log_generator_model(run, model, p.base.dataset)
        run.finish("FINISHED")
        print(f"registered {model} as version {version} of ganforge-{p.base.dataset}")
        print(f"trained {result.kimg:g} kimg ({result.step} steps); wrote {model} and {results}/")


def _run_name(p) -> str:
    """What the runs table shows: dataset, architecture, loss, length, then the DVC experiment if any."""
    import os

    name = f"{p.base.dataset}-{p.train.arch}-{p.train.loss}-{p.train.kimg:g}kimg"
    return f"{name}-{os.environ['DVC_EXP_NAME']}" if os.environ.get("DVC_EXP_NAME") else name


if __name__ == "__main__":
    app()
