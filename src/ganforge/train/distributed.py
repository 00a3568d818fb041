"""Several training processes (DistributedDataParallel), launched by PyTorch's own `torchrun`.

`train.nproc` processes on this node (auto = one per visible GPU, 1 on a CPU): the train stage execs
`torchrun --nproc-per-node N stages/train.py ...` (the same command line), and each process it starts joins
the process group here (NCCL on CUDA, gloo on the CPU). Several nodes: torchrun's own rendezvous settings,
set on every node as its environment variables (PET_NNODES, PET_RDZV_ENDPOINT, PET_RDZV_ID, ...; see the
README): they describe the cluster, not the recipe, so they are not params.yaml keys.

What each process does (ganforge.train.engine and the task):
  - the global batch stays train.batch_size: every rank draws the same global batch of indices and z from
    the shared data and z streams and keeps its own slice of batch_size / world_size, so the images and z of
    a step are the same whatever the number of processes (a checkpoint resumes on any number of them);
    augmentation and the gradient penalty's noise are per-rank streams from the seed and the rank,
  - G and D are wrapped in DDP (gradients averaged = the gradient of the global batch's mean loss),
  - BatchNorm in G is per rank (see `wrap`),
  - rank 0 alone logs, writes checkpoints and outputs; the loss sums are averaged over the ranks first.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
from dataclasses import dataclass

import torch
from torch import nn

from ganforge.errors import ConfigError

# torchrun's multi-node settings (its --nnodes, --rdzv-endpoint, ... as environment variables): when one is
# set, this node is one of several and torchrun's rendezvous joins them; otherwise --standalone (one node,
# a free local port, so that two runs on one machine do not collide).
RDZV_ENV = ("PET_NNODES", "PET_RDZV_ENDPOINT", "PET_RDZV_BACKEND", "PET_RDZV_ID", "PET_MASTER_ADDR")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0  # global rank
    size: int = 1  # world size: processes on all nodes
    device: torch.device = torch.device("cpu")  # this rank's device (cuda:<local rank> on GPUs)

    @property
    def main(self) -> bool:
        """Rank 0: the one process that logs, checkpoints and writes outputs."""
        return self.rank == 0

    def batch_slice(self, batch_size: int) -> slice:
        """This rank's rows of a global batch of `batch_size` (train.run.validate checked that it divides)."""
        assert batch_size % self.size == 0, (batch_size, self.size)
        per_rank = batch_size // self.size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def wrap(self, net: nn.Module) -> nn.Module:
        """`net` in DistributedDataParallel (its gradients averaged over the ranks); itself with one process.

        BatchNorm (in G) stays per rank: it normalises over the rank's batch_size / world_size images.
        torch's SyncBatchNorm runs on GPUs only, so it would make the GPU path one the CPU tests never run,
        and it adds two collectives and a host sync per BatchNorm layer per forward to a step that is
        otherwise free of host syncs. Per-worker BatchNorm is also what Goyal et al. (2017) chose on
        purpose for large-batch data parallelism. The cost: a recipe's BatchNorm statistics come from
        smaller batches on more processes (nproc 1 keeps exactly the one-process maths).
        broadcast_buffers=False: training-mode BatchNorm never reads its running statistics; only rank 0's
        copy is ever used (G_ema, the grids and the checkpoint take rank 0's), so syncing them is waste.
        """
        if self.size == 1:
            return net
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=ids, broadcast_buffers=False)

    def average_(self, t: torch.Tensor) -> torch.Tensor:
        """In place: the mean of `t` over the ranks (a collective: every rank calls it at the same step)."""
        if self.size > 1:
            torch.distributed.all_reduce(t)
            t.div_(self.size)
        return t

    def earliest_bad(self, first_bad: torch.Tensor) -> torch.Tensor:
        """The divergence watch [step, loss_d, loss_g, weight sum] of the rank that went bad first (step -1 =
        none did), so that every rank stops at the same report, together (a collective)."""
        if self.size == 1:
            return first_bad
        rows = [torch.empty_like(first_bad) for _ in range(self.size)]
        torch.distributed.all_gather(rows, first_bad)
        bad = [r for r in rows if r[0] >= 0]
        return min(bad, key=lambda r: float(r[0])) if bad else first_bad

    def agree_on_stop(self, signal_name: str | None) -> str | None:
        """A stop signal that any rank received (a collective): all ranks checkpoint and stop at one step."""
        if self.size == 1:
            return signal_name
        import signal

        num = torch.tensor([signal.Signals[signal_name].value if signal_name else 0], device=self.device)
        torch.distributed.all_reduce(num, op=torch.distributed.ReduceOp.MAX)
        return signal.Signals(int(num.item())).name if int(num.item()) else None

    def from_main(self, obj: dict | None) -> dict | None:
        """Rank 0's `obj` on every rank (e.g. the checkpoint rank 0 read: the other nodes need not have the
        file). Sent as the bytes of torch.save and read with weights_only=True, never as a pickle: a process
        that could write into the rendezvous must not be able to run code in the others. So obj holds
        tensors, numbers, strings, lists and dicts only, as a checkpoint does; None is sent as no bytes."""
        if self.size == 1:
            return obj
        import io

        payload = b""
        if self.main and obj is not None:
            buf = io.BytesIO()
            torch.save(obj, buf)
            payload = buf.getvalue()
        size = torch.tensor([len(payload)], dtype=torch.int64, device=self.device)
        torch.distributed.broadcast(size, src=0)
        if not int(size.item()):
            return None
        data = (torch.frombuffer(bytearray(payload), dtype=torch.uint8) if self.main
                else torch.empty(int(size.item()), dtype=torch.uint8))
        data = data.to(self.device)
        torch.distributed.broadcast(data, src=0)
        return obj if self.main else torch.load(io.BytesIO(data.cpu().numpy().tobytes()), weights_only=True)


def resolve_nproc(nproc: int | str, device: torch.device, visible_gpus: int | None = None) -> int:
    """train.nproc -> processes on this node: auto = one per visible GPU on CUDA, 1 elsewhere. More than the
    visible GPUs, or several on MPS (which torch.distributed has no backend for), is a ConfigError."""
    if device.type == "cuda":
        visible = torch.cuda.device_count() if visible_gpus is None else visible_gpus
        if nproc == "auto":
            return visible
        if nproc > visible:
            raise ConfigError(f"train.nproc is {nproc} but only {visible} GPU(s) are visible (one process "
                              "per GPU: lower train.nproc, use auto, or check CUDA_VISIBLE_DEVICES)")
        return nproc
    if nproc == "auto":
        return 1
    cpus = os.cpu_count() or 1
    if device.type == "cpu" and nproc > cpus:
        raise ConfigError(f"train.nproc is {nproc} but this machine has {cpus} CPU(s): each training process "
                          "needs a core of its own (use at most that many, or auto)")
    if device.type == "mps" and nproc > 1:
        raise ConfigError(f"train.nproc is {nproc} but MPS cannot train in several processes "
                          "(torch.distributed has no MPS backend): use 1 or auto")
    return nproc


def launched() -> bool:
    """Is this process one that torchrun started (it sets WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, ...)?"""
    return "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """The torchrun command line that runs `argv` (this stage's own command) in `nproc` processes here."""
    exe = shutil.which("torchrun", path=os.path.dirname(sys.executable))  # the venv's torchrun
    cmd = [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]  # the same program
    several_nodes = any(os.environ.get(k) for k in RDZV_ENV)
    return [*cmd, *([] if several_nodes else ["--standalone"]), f"--nproc-per-node={nproc}", *argv]


def exec_torchrun(nproc: int, argv: list[str]) -> None:
    """Replace this process by torchrun running `argv` in `nproc` processes (the params were validated
    against nproc first, so a bad batch split exits 2 before any worker starts)."""
    cmd = torchrun_command(nproc, argv)
    print(f"train.nproc {nproc}: {' '.join(cmd)}", flush=True)
    os.execv(cmd[0], cmd)


def join(device: torch.device) -> World:
    """This process's World: one process as it is, or (under torchrun) a member of the process group, on
    its own GPU on CUDA (NCCL) or on the CPU (gloo)."""
    if not launched():
        return World(device=device)
    import torch.distributed as dist

    rank, size, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ConfigError(f"device {device.type} cannot train in several processes: use cuda or cpu")
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", device_id=None)
        atexit.register(dist.destroy_process_group)
    return World(rank=rank, size=size, device=device)
