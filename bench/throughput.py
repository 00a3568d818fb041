"""Training throughput: the project's train step against a loop written the way public DCGAN examples are.

(a) project:   the training engine itself, set up as stages/train.py sets it up: params.yaml's train section,
               validated (ganforge.train.validate), built (ganforge.train.build: the z -> image task and the
               engine's settings) and run (ganforge.train.train), the data resident on the device, the fast
               path when train.fast is auto on CUDA. Without MLflow, checkpoints and fixed-z grids (file and
               tracking I/O, which the reference does not do either).
               Timed between two of its own stats reports: each report reads the device (a host sync), so
               the time covers finished work, and warm-up (CUDA-graph capture included) is left out.
(b) reference: the pytorch/examples DCGAN way: a torchvision-style Dataset (one PIL image per item ->
               ToTensor -> Normalize), a shuffling DataLoader with worker processes, .to(device) per batch,
               the same G, D, init, Adam and batch size, the non-saturating loss with separate backward
               passes for real and fake, and .item() reads of the losses and D outputs every step.
Both run in one process on one device. --rounds alternates (a) and (b) so that drifting machine load
affects both alike; images/s are totals over the rounds. A benchmark, not a test: nothing here asserts speed.

    python bench/throughput.py --steps 200 --out bench/throughput.json
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, help=__doc__)


def kimg_for(steps: int, img_per_step: int) -> float:
    """The train.kimg for which a run has exactly `steps` steps (ganforge.train.run.steps_of: it runs
    ceil(kimg * 1000 / img_per_step), img_per_step = batch_size * d_steps)."""
    kimg = steps * img_per_step / 1000
    while math.ceil(kimg * 1000 / img_per_step) > steps:  # float rounding up by one ulp would add a step
        kimg = math.nextafter(kimg, 0.0)
    return kimg


def timing(steps: int, seconds: float, cpu_seconds: float, batch_size: int) -> dict:
    return {"steps": steps, "seconds": seconds, "cpu_seconds": cpu_seconds,
            "img_per_s": steps * batch_size / seconds, "img_per_cpu_s": steps * batch_size / cpu_seconds}


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from ganforge.train.fast import cpu_bf16_supported

    # the CPU settings that move CPU figures: native bf16 (fast: auto uses it), threads, OpenMP's waiting
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "cpu_bf16": cpu_bf16_supported(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def with_train(raw: dict, params_path: Path, changes: dict):
    """Validated base and train sections of the merged params mapping `raw` with `changes` to its train keys
    (dotted below train: {"eval.every_kimg": 0}), as a user's params.yaml would set them."""
    import copy

    from ganforge.config import parse_params

    raw = copy.deepcopy(raw)
    raw["recipe"] = None  # raw has its recipe laid over it already: laid again, it would undo these keys
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = raw["train"]
        for key in parents:
            node = node[key]
        node[last] = value
    return parse_params(raw, params_path, sections=("base", "train"))


def project_run(x_train, p, params_path: Path, dev, *, warmup: int, steps: int) -> dict:
    """(a): one training run of warm-up + timed steps (validated params `p`, train.kimg set for exactly that
    many steps); the window runs from report to report."""
    from ganforge.train import build, train
    from ganforge.train.run import steps_of

    every, batch = p.train.log_every, p.train.batch_size
    start = max(1, math.ceil(warmup / every)) * every  # window ends are report steps; at least one warm-up
    end = start + math.ceil(steps / every) * every
    p = with_train(p.raw, params_path, {"kimg": kimg_for(end, steps_of(p.train)[1])})
    built = build(p, x_train, None, 0, data_hash="bench", device=dev)
    assert built.engine["steps"] == end and not built.engine["eval_every"], (built.engine["steps"], end)
    reports: list[tuple[int, float, float]] = []  # (step, wall clock, this process's CPU time)

    def log(step: int, stats: dict) -> None:
        reports.append((step, time.perf_counter(), time.process_time()))

    train(built.task, **built.engine, checkpoint_path=None, progress=False, log=log, log_grid=None)
    (s0, t0, c0), (s1, t1, c1) = next(r for r in reports if r[0] == start), reports[-1]
    return timing(s1 - s0, t1 - t0, c1 - c0, batch)


def reference_run(x_train, *, seed: int, z_dim: int, g_channels: int, d_channels: int, batch_size: int,
                  lr: float, beta1: float, beta2: float, device, workers: int, warmup: int,
                  steps: int) -> dict:
    """(b): the public-example loop. Returns the same fields as project_run."""
    import torch
    from PIL import Image
    from torch import nn
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    from ganforge.nets import build_networks
    from ganforge.train.engine import stream_seed

    class ImageArrayDataset(Dataset):
        """torchvision.datasets.MNIST's way: each item becomes a PIL image, then goes through transform."""

        def __init__(self, images, transform):  # images: uint8 [N, C, H, W]
            self.images, self.transform = images, transform

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            img = self.images[i]
            pil = Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
            return self.transform(pil), 0

    n_data, channels, resolution, _ = x_train.shape
    half = (0.5,) * channels
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(half, half)])  # -> [-1, 1]
    loader = DataLoader(ImageArrayDataset(x_train, transform), batch_size=batch_size, shuffle=True,
                        num_workers=workers, drop_last=True)

    torch.manual_seed(stream_seed(seed, "init"))  # the same initial weights as the project's run
    G, D = build_networks("dcgan", z_dim=z_dim, channels=channels, resolution=resolution,
                          g_channels=g_channels, d_channels=d_channels, g_spectral_norm=False,
                          d_spectral_norm=False)
    G, D = G.to(device), D.to(device)
    opt_G = torch.optim.Adam(G.parameters(), lr=lr, betas=(beta1, beta2))
    opt_D = torch.optim.Adam(D.parameters(), lr=lr, betas=(beta1, beta2))
    criterion = nn.BCEWithLogitsLoss()  # our D returns logits; the example's Sigmoid + BCELoss, stably

    def batches():
        while True:  # epoch after epoch, as `for epoch in range(n): for data in dataloader:` does
            yield from loader

    it = batches()
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
        real = next(it)[0].to(device)  # [B, C, H, W] in [-1, 1]
        b = real.size(0)
        # (1) update D: maximize log(D(x)) + log(1 - D(G(z)))
        D.zero_grad()
        label = torch.full((b,), 1.0, device=device)
        output = D(real)
        err_d_real = criterion(output, label)
        err_d_real.backward()
        d_x = output.sigmoid().mean().item()
        noise = torch.randn(b, z_dim, device=device)
        fake = G(noise)
        label.fill_(0.0)
        output = D(fake.detach())
        err_d_fake = criterion(output, label)
        err_d_fake.backward()
        d_g_z1 = output.sigmoid().mean().item()
        err_d = err_d_real + err_d_fake
        opt_D.step()
        # (2) update G: maximize log(D(G(z)))
        G.zero_grad()
        label.fill_(1.0)
        output = D(fake)
        err_g = criterion(output, label)
        err_g.backward()
        d_g_z2 = output.sigmoid().mean().item()
        opt_G.step()
        _stats = (err_d.item(), err_g.item(), d_x, d_g_z1, d_g_z2)  # what the example prints each step
    sync(device)
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0  # this process's CPU time: the DataLoader workers' is not in it
    return timing(steps, seconds, cpu_seconds, batch_size)


class _Collect(logging.Handler):
    """Keeps the fast path's log lines (capture succeeded, or why it failed) for the report."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def totals(runs: list[dict], batch_size: int) -> dict:
    steps, seconds, cpu = (sum(r[k] for r in runs) for k in ("steps", "seconds", "cpu_seconds"))
    return {**timing(steps, seconds, cpu, batch_size), "rounds": runs}


@app.command()
def main(
    params: Path = typer.Option("params.yaml", help="params: networks, loss, batch, lr, log_every, fast"),
    data: Path = typer.Option(None, help="prepared data directory [default: data/<base.dataset>]"),
    device: str = typer.Option(None, help="auto | cpu | cuda | mps [default: params train.device]"),
    fast: str = typer.Option(None, help="auto | off: the project's fast path [default: params train.fast]"),
    steps: int = typer.Option(200, min=1, help="timed steps of the project's step (rounded up to log_every)"),
    ref_steps: int = typer.Option(None, min=1, help="timed steps of the reference loop [default: --steps]"),
    warmup: int = typer.Option(20, min=0, help="untimed steps before timing, in each run"),
    rounds: int = typer.Option(1, min=1, help="alternate (a) and (b) this many times"),
    workers: int = typer.Option(2, min=0, help="DataLoader workers of the reference (pytorch/examples: 2)"),
    vs_off: bool = typer.Option(False, help="each round, also time the project's step with fast=off: the "
                                            "fast path's own speed-up (bf16 CPU, CUDA)"),
    out: Path = typer.Option("bench/throughput.json", help="where the JSON report goes"),
) -> None:
    """Time the project's train step and the reference loop; print images/s and the ratio; write JSON."""
    from ganforge.cli import user_errors

    with user_errors():
        from ganforge.config import load_params
        from ganforge.data.prepared import load_info, load_split
        from ganforge.device import resolve_device
        from ganforge.errors import GanforgeError
        from ganforge.io import atomic_write_json
        from ganforge.train import validate

        p = load_params(params, "base", "train")
        dev = resolve_device(device or p.train.device)
        data = data or Path("data") / p.base.dataset
        if not (data / "train.npz").exists():
            raise GanforgeError(f"no prepared data in {data}: make it with "
                                f"`PATH=.venv/bin:$PATH .venv/bin/dvc repro download` (or pass --data)")
        x_train, _ = load_split(data, "train")  # uint8 [N, C, H, W]
        # the stage's own params (kimg is set per run; an in-training evaluation would time the judge, not
        # the training step; unconditional, as the reference loop has no labels), checked as the stage does
        changes = {"eval.every_kimg": 0, "conditional": False, **({"fast": fast} if fast is not None else {})}
        p = with_train(p.raw, params, changes)
        validate(p, load_info(data, p.base.dataset), 1)
        t = p.train
        # the reference loop: the seed DCGAN with one Adam setting (G's) for both networks
        net_args = {"seed": p.base.seed, "z_dim": t.z_dim, "g_channels": t.g_channels,
                    "d_channels": t.d_channels, "batch_size": t.batch_size, "lr": t.g.lr, "beta1": t.g.beta1,
                    "beta2": t.g.beta2}

        collect = _Collect()
        fast_log = logging.getLogger("ganforge.train.fast")
        fast_log.addHandler(collect)
        fast_log.setLevel(logging.INFO)
        print(f"device {dev}, {len(x_train)} train images of {x_train.shape[1:]}, batch {t.batch_size}, "
              f"fast={t.fast}, {rounds} round(s)", flush=True)
        load_before = os.getloadavg()
        vs_off = vs_off and t.fast != "off"
        p_off = with_train(p.raw, params, {"fast": "off"})
        project, project_off, reference = [], [], []
        for r in range(1, rounds + 1):
            project.append(project_run(x_train, p, params, dev, warmup=warmup, steps=steps))
            print(f"round {r}: project   {project[-1]['img_per_s']:10.1f} img/s "
                  f"({project[-1]['steps']} steps)", flush=True)
            if vs_off:
                project_off.append(project_run(x_train, p_off, params, dev, warmup=warmup, steps=steps))
                print(f"round {r}: fast=off   {project_off[-1]['img_per_s']:9.1f} img/s "
                      f"({project_off[-1]['steps']} steps)", flush=True)
            reference.append(reference_run(x_train, **net_args, device=dev, workers=workers, warmup=warmup,
                                           steps=ref_steps or steps))
            print(f"round {r}: reference {reference[-1]['img_per_s']:10.1f} img/s "
                  f"({reference[-1]['steps']} steps)", flush=True)
        fast_log.removeHandler(collect)

        result = {"project": totals(project, t.batch_size), "reference": totals(reference, t.batch_size)}
        ratio = result["project"]["img_per_s"] / result["reference"]["img_per_s"]
        # per round too: on a shared machine a load change inside one round moves the totals' ratio
        round_ratios = [a["img_per_s"] / b["img_per_s"] for a, b in zip(project, reference, strict=True)]
        report = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": machine(), "device": str(dev), "dataset": p.base.dataset, "n_train": len(x_train),
            "batch_size": t.batch_size, "fast": t.fast, "loss": t.loss.model_dump(), "log_every": t.log_every,
            "warmup": warmup, "workers": workers,
            "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
            "fast_path_log": collect.lines, **result, "ratio": ratio, "round_ratios": round_ratios,
            "ratio_median_of_rounds": statistics.median(round_ratios),
            # images per second of this process's CPU time: steadier than wall time when other jobs share
            # the cores (the reference's DataLoader workers are not counted, which flatters the reference)
            "cpu_ratio": result["project"]["img_per_cpu_s"] / result["reference"]["img_per_cpu_s"],
        }
        if vs_off:
            off_ratios = [a["img_per_s"] / b["img_per_s"] for a, b in zip(project, project_off, strict=True)]
            report.update({"project_fast_off": totals(project_off, t.batch_size),
                           "fast_over_off_round_ratios": off_ratios,
                           "fast_over_off_median_of_rounds": statistics.median(off_ratios)})
        atomic_write_json(out, report)
        for line in collect.lines:
            print(line)
        print(f"project   {result['project']['img_per_s']:10.1f} img/s\n"
              f"reference {result['reference']['img_per_s']:10.1f} img/s\n"
              f"ratio     {ratio:10.2f}x   (median of rounds {statistics.median(round_ratios):.2f}x, "
              f"per CPU-second {report['cpu_ratio']:.2f}x)")
        if vs_off:
            print(f"fast/off  {report['fast_over_off_median_of_rounds']:10.2f}x   (median of rounds)")
        print(f"wrote {out}")


if __name__ == "__main__":
    app()
