"""The CUDA fast path of the training step: the same algorithm, launched the way a tiny model needs.

A 28x28 DCGAN step at batch 128 is a few hundred small kernels. An eager loop spends its time in Python and
kernel launches, not arithmetic (on an H200: ~20k img/s eager vs ~129k img/s with the step as one CUDA
graph). So on CUDA with `train.fast: auto` this module makes the loop:
  - run the forward passes under bf16 autocast; weights, gradients, Adam state and G_ema stay fp32
    ("master weights"), only the convolutions' inputs/outputs are bf16,
  - keep G and D in channels_last (NHWC), the layout of cuDNN's fast convolution kernels,
  - build Adam fused (a few kernels for all weights) and capturable (its step count lives on the device),
  - set cudnn.benchmark (the shapes never change, so the autotuned kernel choice is made once),
  - capture loop.train_step as a whole (both phases, both optimizer steps, the EMA update, the loss sums
    and the divergence watch) once as a CUDA graph after a few eager warm-up steps on a side stream, then
    replay it: one launch per step, no host work, no host synchronisation.
train_step can be captured because loop.py keeps it free of host reads: batches and z come from device
torch.Generators, the step counter and the running sums are device tensors, every shape is static.

If the capture fails, training goes on eagerly (still bf16 / channels_last / fused Adam) after ONE log line
that says why. On MPS, or with `train.fast: off`, the loop runs its plain fp32 eager step.

On the CPU, `train.fast: auto` runs the forward passes under bf16 autocast (fp32 master weights, as on CUDA)
when the CPU computes bf16 natively (avx512_bf16 or AMX: issue 12's probe of the DCGAN step on such a CPU
ran 1.65x faster); on other CPUs bf16 is only emulated (on an AVX2 EPYC the step ran 2.3-4.8x SLOWER,
bench/RESULTS.md), so auto trains in fp32 there and says so in one log line per run. No CUDA graph and no
fused Adam on the CPU: the step is compute-bound, not launch-bound. Whatever train.fast says, CPU networks
are channels_last, because oneDNN's NHWC convolutions are faster (bench/RESULTS.md); so `fast: off` on a
CPU is the plain fp32 step, bit for bit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from ganforge.errors import ConfigError

log = logging.getLogger(__name__)

FAST_MODES = ("auto", "off")
# Eager steps before the capture. They create Adam's state (its tensors must exist before capture: the graph
# records their addresses), let cudnn.benchmark pick its kernels and cuBLAS/cuDNN create their handles and
# workspaces, none of which may happen inside a capture. Three is what the PyTorch CUDA-graph docs use.
WARMUP_STEPS = 3
# Overrides the CPU bf16 detection: "0" = treat this CPU as without native bf16 (fp32 under fast: auto),
# "1" = as with it (autocast runs everywhere, emulated and slow where the CPU lacks bf16). For tests of the
# other kind of CPU than the one at hand, and for a CPU where bf16 is measured to be slower after all.
CPU_BF16_ENV = "GANFORGE_CPU_BF16"


def cpu_bf16_supported() -> bool:
    """Does this CPU compute bf16 natively (avx512_bf16 or AMX)? GANFORGE_CPU_BF16=0/1 overrides.

    Not torch.ops.mkldnn._is_mkldnn_bf16_supported(): that is True on any AVX-512 CPU, where oneDNN only
    emulates bf16 (conversions around fp32 arithmetic), which is slower than plain fp32.
    """
    override = os.environ.get(CPU_BF16_ENV)
    if override is not None:
        if override not in ("0", "1"):
            raise ConfigError(f"{CPU_BF16_ENV}={override!r}: use 1 (bf16) or 0 (fp32), or leave it unset")
        return override == "1"
    # torch's cpuinfo-based checks (what its own compiler uses to pick bf16 kernels). Private names, so
    # guarded: a torch without them gets fp32, the safe choice. (Every AMX CPU also has AMX-BF16.)
    names = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in names)


@dataclass(frozen=True)
class FastPath:
    """What the loop does differently on the fast path; with train.fast: off every member is a no-op, except
    prepare's channels_last on the CPU."""

    enabled: bool  # CUDA and train.fast == auto: fused + capturable Adam, the step as a CUDA graph
    bf16: bool = False  # autocast to bf16 (GPUs and CPUs without native bf16 stay fp32)
    # NHWC weights: cuDNN's fast kernels on the fast path, and oneDNN's on the CPU, where they made the same
    # step 1.27-1.35x faster (bench/RESULTS.md). On the CPU both fast modes use it.
    channels_last: bool = False
    device_type: str = "cpu"  # the autocast device

    @classmethod
    def choose(cls, fast: str, device: str | torch.device) -> FastPath:
        """The fast path for `fast` (auto | off) on `device`: CUDA graph + bf16 for auto on CUDA, bf16 for
        auto on a CPU with native bf16, nothing else (channels_last on every CPU)."""
        if fast not in FAST_MODES:
            raise ConfigError(f"unknown train.fast {fast!r} (allowed: {', '.join(FAST_MODES)})")
        device_type = torch.device(device).type
        if device_type == "cpu":
            bf16 = fast == "auto" and cpu_bf16_supported()
            if fast == "auto" and not bf16:
                log.warning("train.fast: auto: this CPU has no native bf16 (avx512_bf16 or AMX); "
                            "training in fp32")
            return cls(enabled=False, bf16=bf16, channels_last=True)
        if fast == "off" or device_type != "cuda":
            return cls(enabled=False, device_type=device_type)
        # A process-wide switch, set only here: the fast path's shapes are static, so autotuning pays once.
        torch.backends.cudnn.benchmark = True
        bf16 = torch.cuda.is_bf16_supported()
        if not bf16:
            log.warning("fast path: this GPU has no bf16 support; training in fp32 (CUDA graph still used)")
        return cls(enabled=True, bf16=bf16, channels_last=True, device_type="cuda")

    def prepare(self, *nets: nn.Module) -> None:
        """Move the networks' 4-d weights to channels_last, in place (before G_ema is copied from G)."""
        if self.channels_last:
            for net in nets:
                net.to(memory_format=torch.channels_last)

    @property
    def adam_options(self) -> dict:
        """Extra torch.optim.Adam arguments: fused + capturable on the fast path (same update rule)."""
        return {"fused": True, "capturable": True} if self.enabled else {}

    def autocast(self) -> contextlib.AbstractContextManager:
        """Wrap forward passes in this: bf16 autocast when `bf16` (CUDA fast path, bf16 CPU), else nothing.

        cache_enabled=False: autocast's cache of bf16 weight copies must not outlive a captured region
        (the PyTorch docs require it for graphed callables); the extra casts are inside the graph anyway.
        On the CPU the same setting keeps one code path: casting the weights again per D call costs ~nothing.
        """
        if self.bf16:
            return torch.autocast(self.device_type, dtype=torch.bfloat16, cache_enabled=False)
        return contextlib.nullcontext()

    def step(self, train_step: Callable[[], None], generators: Iterable[torch.Generator],
             nets: Iterable[nn.Module]) -> Callable[[], None]:
        """The function the loop calls once per step: train_step itself, or its CUDA-graph replay.

        generators: the device generators train_step draws from (the graph must advance them on replay).
        nets: the modules train_step trains, whose requires_grad flags a failed capture must restore.
        """
        if not self.enabled:
            return train_step
        return GraphedStep(train_step, list(generators), list(nets))


class GraphedStep:
    """train_step as a CUDA graph: calls 1..WARMUP_STEPS run it eagerly on a side stream, the next call
    captures it and replays the capture, every later call only replays.

    Every call is one real training step (warm-up and capture included), so the trajectory has the same
    number of steps whether or not the capture succeeds.
    """

    def __init__(self, train_step: Callable[[], None], generators: list[torch.Generator],
                 nets: list[nn.Module], warmup: int = WARMUP_STEPS):
        self.train_step = train_step
        self.generators = generators
        self.params = [p for net in nets for p in net.parameters()]
        self.warmup, self.warmup_left = warmup, warmup
        # Warm-up and capture share one side stream: capture may not run on the default stream, and
        # libraries (cuBLAS, cuDNN) keep per-stream handles/workspaces that warm-up must create there.
        self.stream = torch.cuda.Stream()
        self.graph: torch.cuda.CUDAGraph | None = None
        self.eager = False  # True once a capture failed: plain eager calls from then on

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()  # the whole step, one launch; RNG offsets advance as if run eagerly
        elif self.eager:
            self.train_step()
        elif self.warmup_left > 0:
            self.warmup_left -= 1
            self._on_side_stream(self.train_step)
        else:
            self.graph = self._capture()
            if self.graph is not None:
                self.graph.replay()  # capturing records the step without running it: run it now
            else:
                self.eager = True
                self.train_step()

    def _on_side_stream(self, fn: Callable[[], None]) -> None:
        self.stream.wait_stream(torch.cuda.current_stream())  # see everything queued before (init, data)
        with torch.cuda.stream(self.stream):
            fn()
        torch.cuda.current_stream().wait_stream(self.stream)  # later work on the loop's stream sees it

    def _capture(self) -> torch.cuda.CUDAGraph | None:
        """Record one train_step into a CUDA graph; None (and one log line) if that is not possible.

        Capturing runs train_step's Python but none of its kernels, so a failed capture leaves the device
        state as it was; only host-side state it touched is put back: the generators' offsets, the
        requires_grad flags (train_step freezes D for the G phase) and the gradients, which would point into
        the abandoned graph's memory.
        """
        rng = [g.get_state() for g in self.generators]
        requires_grad = [p.requires_grad for p in self.params]
        loop_stream = torch.cuda.current_stream()
        graph = torch.cuda.CUDAGraph()
        try:
            for g in self.generators:
                with warnings.catch_warnings():  # newer torch registers generators itself (deprecated no-op)
                    warnings.simplefilter("ignore")
                    graph.register_generator_state(g)  # else: "unexpected CUDA generator used during capture"
            self.stream.wait_stream(loop_stream)
            with torch.cuda.graph(graph, stream=self.stream):
                self.train_step()
            loop_stream.wait_stream(self.stream)
        except Exception as e:  # any reason at all: the eager step computes the same thing
            torch.cuda.set_stream(loop_stream)  # the graph context may not have restored it
            torch.cuda.synchronize()
            for g, state in zip(self.generators, rng, strict=True):
                g.set_state(state)
            for p, flag in zip(self.params, requires_grad, strict=True):
                p.requires_grad_(flag)
                p.grad = None
            reason = (str(e).strip().splitlines() or [""])[0][:300]
            log.warning("fast path: CUDA graph capture failed (%s: %s); training eagerly "
                        "(bf16, channels_last and fused Adam kept)", type(e).__name__, reason)
            return None
        log.info("fast path: training step captured as a CUDA graph after %d eager warm-up steps",
                 self.warmup)
        return graph
