"""StyleGAN2 (Karras et al. 2020, "Analyzing and improving the image quality of StyleGAN") in plain PyTorch,
after NVlabs/stylegan2-ada-pytorch's training/networks.py (config-f layers) and training/loss.py (style
mixing, the path-length penalty). No custom CUDA ops: the same code on the CPU and the GPU.

G = mapping + synthesis ("skip" generator):
  z [B, z_dim] -> normalised by its 2nd moment (, class embedding, normalised, concatenated) -> mapping MLP
  (mapping_layers x w_dim, leaky ReLU, lr x mapping_lr) -> w [B, w_dim], broadcast to ws [B, num_ws, w_dim];
  synthesis: a learned constant [g, base, base], then per resolution two modulated 3x3 convs (weight
  demodulation, grouped-convolution form; the first up-samples x2), each followed by per-pixel noise times
  a learned strength, bias and leaky ReLU; every resolution's toRGB (modulated 1x1, no demodulation) is
  added to the up-sampled image so far. Output linear (no tanh), as NVlabs'.
  Sizes: 32 px 4 -> 8 -> 16 -> 32; 64 px 4 -> ... -> 64; 28 px starts at a 7x7 constant: 7 -> 14 -> 28
  (no crop, no wasted pixels; the layers are the same kind at every size). Width g_channels throughout
  (NVlabs' CIFAR config is 512 at every resolution of 32 px too).
D = residual discriminator: fromRGB (1x1), per resolution conv3x3 -> conv3x3 + down-sampling, plus a 1x1
  down-sampled skip, the sum times sqrt(1/2); at the base size the epilogue: minibatch stddev (group
  mbstd_group, one feature), conv3x3, linear (d x base^2 -> d), linear -> [B]. Conditional: the projection
  term <embed(y), h> on the epilogue's features h (nets/conditional.py), instead of NVlabs' mapped cmap.
Equalised learning rate everywhere: weights stored N(0, 1) (/ lr multiplier), multiplied at run time by
  He's constant 1/sqrt(fan_in) (x lr multiplier), so Adam's per-parameter step is the same for every layer.

Plain-PyTorch substitutes for upfirdn2d: up-sampling is bilinear (which is zero insertion + the [1, 3, 3, 1]
FIR filter, up to the border), down-sampling is 2x2 average pooling after the conv (a 4x4 stride-2 blurred
kernel where NVlabs blurs then strides the 3x3). No fp16 paths, no conv clamping.

Training-only pieces live in StyleTerms (an nn.Module among the task's nets, so its path-length mean is
checkpointed): style mixing draws (one cutoff per batch, with probability style_mixing, as NVlabs' run_G)
and the lazy path-length penalty. Every random draw comes from a torch.Generator the caller passes (the
task's seeded streams): noise=<generator> for per-layer noise, noise=None for the fixed noise buffers
(deterministic sampling, NVlabs' noise_mode='const').
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ganforge.errors import ConfigError
from ganforge.nets.conditional import check_labels, class_logits, projection

# resolution -> (the constant's / D epilogue's size, number of x2 stages)
PLANS = {28: (7, 2), 32: (4, 3), 64: (4, 4)}
RESOLUTIONS = tuple(PLANS)
SQRT2 = math.sqrt(2)


class StyleGAN2Settings(BaseModel):
    """train.arch: {kind: stylegan2, <setting>: value}; the defaults are NVlabs' (config-f / the paper)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    w_dim: int = Field(512, ge=1, le=8192)  # width of w and of the mapping network
    mapping_layers: int = Field(8, ge=1, le=32)  # depth of the mapping network (NVlabs' CIFAR config: 2)
    mapping_lr: float = Field(0.01, gt=0, le=1)  # learning-rate multiplier of the mapping network
    w_avg_beta: float = Field(0.995, ge=0, lt=1)  # decay of the tracked mean w (truncation's centre)
    mbstd_group: int = Field(4, ge=0, le=1024)  # D's minibatch-stddev group size; 0 = off
    style_mixing: float = Field(0.9, ge=0, le=1)  # probability that a training batch mixes two w
    pl_weight: float = Field(2.0, ge=0)  # path-length penalty weight; 0 = off
    pl_every: int = Field(4, ge=1, le=1_000_000)  # lazy: every k G steps, the penalty times k
    pl_decay: float = Field(0.01, gt=0, le=1)  # of the path lengths' moving mean
    pl_batch_shrink: int = Field(2, ge=1, le=1024)  # the penalty's batch = the batch / this


G_KEYS = ("w_dim", "mapping_layers", "mapping_lr", "w_avg_beta")  # what shapes G (its config())
D_KEYS = ("mbstd_group",)
TRAINING_KEYS = ("style_mixing", "pl_weight", "pl_every", "pl_decay", "pl_batch_shrink")  # StyleTerms'


def _plan(resolution: int) -> tuple[int, int]:
    if resolution not in PLANS:
        raise ConfigError(f"the stylegan2 architecture supports resolutions "
                          f"{', '.join(map(str, RESOLUTIONS))}, got {resolution}")
    return PLANS[resolution]


def _no_spectral_norm(spectral_norm: bool, net: str) -> None:
    if spectral_norm:
        raise ConfigError(f"train.spectral_norm.{net}: stylegan2 uses equalised learning rate and weight "
                          f"demodulation, not spectral norm; set train.spectral_norm.{net}: false")


def _only(keys: tuple[str, ...], given: dict, net: str) -> None:
    unknown = set(given) - set(G_KEYS + D_KEYS + TRAINING_KEYS) - set(keys)
    if unknown:
        raise TypeError(f"stylegan2 {net}: unknown settings {sorted(unknown)}")


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU (0.2) times sqrt(2): unit gain for N(0, 1) inputs (NVlabs' bias_act 'lrelu')."""
    return F.leaky_relu(x, 0.2) * SQRT2


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x / sqrt(mean(x^2)) over the feature dimension: [B, F] -> [B, F]."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: weight ~ N(0, 1) / lr_mul stored, lr_mul / sqrt(in) applied
    at run time; bias (initialised to bias_init) times lr_mul. [B, in] -> [B, out]."""

    def __init__(self, in_features: int, out_features: int, *, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain, self.bias_gain = lr_mul / math.sqrt(in_features), lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return lrelu(x) if self.activation else x


class EqualConv2d(nn.Module):
    """Conv (stride 1, same padding) with equalised learning rate, optionally followed by 2x2 average
    pooling (down=True), then bias and leaky ReLU: [B, in, H, W] -> [B, out, H, W] (or H/2, W/2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, *, bias: bool = True,
                 activation: bool = True, down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel * kernel)
        self.activation, self.down, self.padding = activation, down, kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight * self.weight_gain, padding=self.padding)
        if self.down:
            x = F.avg_pool2d(x, 2)
        if self.bias is not None:
            x = x + self.bias[None, :, None, None]
        return lrelu(x) if self.activation else x


def modulated_weight(weight: torch.Tensor, styles: torch.Tensor, demodulate: bool) -> torch.Tensor:
    """Each sample's conv weight: weight [O, I, k, k] scaled per input channel by styles [N, I], then
    (demodulate) each output channel divided by its norm -> [N, O, I, k, k]."""
    w = weight[None] * styles[:, None, :, None, None]  # [N, O, I, k, k]
    if demodulate:
        w = w * (w.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8).rsqrt()
    return w


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True
                     ) -> torch.Tensor:
    """x [N, I, H, W] convolved with each sample's own modulated weight (same padding) -> [N, O, H, W], as one
    grouped convolution: the batch folded into channels, groups = N (NVlabs' fused_modconv)."""
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    weights = modulated_weight(weight, styles, demodulate).reshape(n * c_out, c_in, kh, kw)
    out = F.conv2d(x.reshape(1, n * c_in, h, w), weights, padding=kh // 2, groups=n)  # [1, N * O, H, W]
    return out.reshape(n, c_out, h, w)


class SynthesisLayer(nn.Module):
    """(x2 bilinear up-sampling,) modulated demodulated 3x3 conv, + noise x strength, + bias, leaky ReLU:
    [N, I, H, W], w [N, w_dim] -> [N, O, R, R] (R = resolution)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)  # styles start at 1
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))  # scale: demodulation's
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.up, self.resolution = up, resolution

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Generator | None) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = modulated_conv2d(x, self.weight, self.affine(w), demodulate=True)
        R = self.resolution
        n = (self.noise_const if noise is None else
             torch.randn(x.shape[0], 1, R, R, device=x.device, dtype=x.dtype, generator=noise))
        return lrelu(x + n * self.noise_strength + self.bias[None, :, None, None])


class ToRGB(nn.Module):
    """Modulated 1x1 conv without demodulation, + bias: [N, I, R, R], w -> [N, C, R, R]."""

    def __init__(self, in_channels: int, channels: int, w_dim: int):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        return modulated_conv2d(x, self.weight, styles, demodulate=False) + self.bias[None, :, None, None]


class SynthesisBlock(nn.Module):
    """One resolution: (the constant, or conv0 with up-sampling), conv1, toRGB added to the up-sampled image.
    Reads num_conv + 1 ws (its toRGB's w is the next block's first)."""

    def __init__(self, in_channels: int, out_channels: int, channels: int, w_dim: int, resolution: int,
                 first: bool):
        super().__init__()
        self.first = first
        if first:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, up=False)
        self.torgb = ToRGB(out_channels, channels, w_dim)
        self.num_conv = 1 if first else 2

    def forward(self, x, img, ws: torch.Tensor, noise: torch.Generator | None):
        # ws [N, num_conv + 1, w_dim]
        if self.first:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        else:
            x = self.conv0(x, ws[:, 0], noise)
        x = self.conv1(x, ws[:, self.num_conv - 1], noise)
        y = self.torgb(x, ws[:, self.num_conv])
        if img is not None:
            img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
        return x, y if img is None else img + y


class MappingNetwork(nn.Module):
    """z [N, z_dim] (, labels [N] or class weights [N, K]) -> w [N, w_dim]; keeps the moving mean w_avg."""

    def __init__(self, z_dim: int, w_dim: int, num_classes: int, layers: int, lr_mul: float,
                 w_avg_beta: float):
        super().__init__()
        self.num_classes, self.w_avg_beta = num_classes, w_avg_beta
        self.embed = EqualLinear(num_classes, w_dim) if num_classes else None  # lr x 1, as NVlabs'
        dims = [z_dim + (w_dim if num_classes else 0)] + [w_dim] * layers
        self.layers = nn.ModuleList(EqualLinear(a, b, lr_mul=lr_mul, activation=True)
                                    for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, update_w_avg: bool = False):
        x = normalize_2nd_moment(z)
        if self.embed is not None:
            # [N, K]; an identity row rather than F.one_hot, whose value check may sync with the host
            onehot = c if c.is_floating_point() else torch.eye(self.num_classes, device=z.device,
                                                               dtype=z.dtype)[c]
            x = torch.cat([x, normalize_2nd_moment(self.embed(onehot))], dim=1)
        for layer in self.layers:
            x = layer(x)
        if update_w_avg:
            with torch.no_grad():  # in place, no host sync: graph-safe
                self.w_avg.copy_(x.detach().mean(0).to(self.w_avg.dtype).lerp(self.w_avg, self.w_avg_beta))
        return x


class StyleGAN2Generator(nn.Module):
    W_TRUNCATION = True  # forward takes psi (sampling.generate's w-space truncation)

    def config(self) -> dict:
        """The constructor arguments: enough to rebuild this network from a file."""
        return {"z_dim": self.z_dim, "channels": self.channels, "resolution": self.resolution,
                "g_channels": self.g_channels, "spectral_norm": False, "num_classes": self.num_classes,
                "w_dim": self.w_dim, "mapping_layers": self.mapping_layers, "mapping_lr": self.mapping_lr,
                "w_avg_beta": self.w_avg_beta}

    def __init__(self, z_dim: int, channels: int, resolution: int, g_channels: int, spectral_norm: bool,
                 num_classes: int = 0, *, w_dim: int = 512, mapping_layers: int = 8, mapping_lr: float = 0.01,
                 w_avg_beta: float = 0.995, **training):  # training: StyleTerms' settings, not G's
        super().__init__()
        _only(G_KEYS, training, "G")
        _no_spectral_norm(spectral_norm, "g")
        base, n_up = _plan(resolution)
        self.z_dim, self.channels, self.resolution, self.g_channels = z_dim, channels, resolution, g_channels
        self.num_classes, self.w_dim, self.mapping_layers = num_classes, w_dim, mapping_layers
        self.mapping_lr, self.w_avg_beta = mapping_lr, w_avg_beta
        self.blocks = nn.ModuleList(
            SynthesisBlock(g_channels, g_channels, channels, w_dim, base * 2**i, first=i == 0)
            for i in range(n_up + 1))
        self.num_ws = sum(b.num_conv for b in self.blocks) + 1
        self.mapping = MappingNetwork(z_dim, w_dim, num_classes, mapping_layers, mapping_lr, w_avg_beta)

    def ws(self, z: torch.Tensor, c: torch.Tensor | None = None, *, psi: float = 1.0,
           mix: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """ws [N, num_ws, w_dim]: w(z, c) at every layer; mix = (z2 [N, z_dim], cutoff: int or 0-dim int64
        tensor): the layers from the cutoff on take w(z2, c) (no host sync: a mask, not a slice); psi < 1:
        truncation toward the tracked mean w (w_avg + psi (w - w_avg))."""
        check_labels(c, self.num_classes, z.shape[0])
        w = self.mapping(z, c, update_w_avg=self.training)
        ws = w[:, None].expand(-1, self.num_ws, -1)
        if mix is not None:
            z2, cutoff = mix
            later = torch.arange(self.num_ws, device=z.device) >= torch.as_tensor(cutoff, device=z.device)
            ws = torch.where(later[None, :, None], self.mapping(z2, c)[:, None], ws)
        if psi != 1:
            ws = self.mapping.w_avg.to(ws.dtype).lerp(ws, psi)
        return ws

    def synthesis(self, ws: torch.Tensor, noise: torch.Generator | None = None) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> images [N, C, R, R]. noise: the generator of the per-layer noise, or None
        for the fixed noise buffers."""
        x = img = None
        i = 0
        for block in self.blocks:
            x, img = block(x, img, ws[:, i : i + block.num_conv + 1], noise)
            i += block.num_conv
        return img

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, *, psi: float = 1.0,
                mix: tuple[torch.Tensor, torch.Tensor] | None = None, noise: torch.Generator | None = None,
                return_ws: bool = False):
        # z [B, z_dim] (, labels c [B]) -> [B, C, R, R] (, ws [B, num_ws, w_dim] with return_ws)
        ws = self.ws(z, c, psi=psi, mix=mix)
        img = self.synthesis(ws, noise)
        return (img, ws) if return_ws else img


def minibatch_stddev(x: torch.Tensor, group: int) -> torch.Tensor:
    """NVlabs' MinibatchStdLayer (one feature): x [N, C, H, W] -> [N, C + 1, H, W]; sample i is in group
    i mod (N / g), g = the largest divisor of N up to `group`."""
    N, C, H, W = x.shape
    g = max(d for d in range(1, min(group, N) + 1) if N % d == 0)
    y = x.reshape(g, -1, C, H, W)  # [g, N/g, C, H, W]
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [N/g]
    y = y.reshape(-1, 1, 1, 1).repeat(g, 1, H, W)  # [N, 1, H, W]
    return torch.cat([x, y], dim=1)


class DBlock(nn.Module):
    """Residual D block: [N, d, R, R] -> [N, d, R/2, R/2]: (conv3x3, conv3x3 + down) + a 1x1 down-sampled
    skip, the sum times sqrt(1/2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv0 = EqualConv2d(channels, channels, 3)
        self.conv1 = EqualConv2d(channels, channels, 3, down=True)
        self.skip = EqualConv2d(channels, channels, 1, bias=False, activation=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * math.sqrt(0.5)


class StyleGAN2Discriminator(nn.Module):
    def config(self) -> dict:
        """The constructor arguments."""
        return {"channels": self.channels, "resolution": self.resolution, "d_channels": self.d_channels,
                "spectral_norm": False, "num_classes": self.num_classes, "mbstd_group": self.mbstd_group}

    def __init__(self, channels: int, resolution: int, d_channels: int, spectral_norm: bool,
                 num_classes: int = 0, *, mbstd_group: int = 4, **others):  # others: G's and StyleTerms'
        super().__init__()
        _only(D_KEYS, others, "D")
        _no_spectral_norm(spectral_norm, "d")
        base, n_down = _plan(resolution)
        self.channels, self.resolution, self.d_channels = channels, resolution, d_channels
        self.num_classes, self.mbstd_group = num_classes, mbstd_group
        d = d_channels
        self.fromrgb = EqualConv2d(channels, d, 1)
        self.blocks = nn.Sequential(*[DBlock(d) for _ in range(n_down)])
        self.conv = EqualConv2d(d + (1 if mbstd_group else 0), d, 3)
        self.fc = EqualLinear(d * base * base, d, activation=True)
        self.out = EqualLinear(d, 1)
        self.embed = projection(num_classes, d)  # None when unconditional

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, R, R] -> h [N, d] (what the output layer and the projection read)."""
        x = self.blocks(self.fromrgb(x))  # [N, d, base, base]
        if self.mbstd_group:
            x = minibatch_stddev(x, self.mbstd_group)
        return self.fc(self.conv(x).flatten(1))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, classes: bool = False) -> torch.Tensor:
        # x [B, C, R, R] (, labels y [B]) -> raw outputs [B]; classes=True: the projection's class logits
        if classes:
            return class_logits(self.embed, self.features(x))
        check_labels(y, self.num_classes, x.shape[0])
        h = self.features(x)
        out = self.out(h).flatten()
        return out if y is None else out + (self.embed(y) * h).sum(1)


def init_stylegan2_weights(module: nn.Module) -> None:
    """Nothing to do: with equalised learning rate the constructors already drew every weight N(0, 1) (the
    run-time gains do the scaling), and the projection embedding is initialised by nets/conditional.py."""


def path_lengths(img: torch.Tensor, ws: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """||J_w^T y|| per sample, the Jacobian of img w.r.t. ws, averaged over the num_ws layers as NVlabs':
    sqrt(mean_l sum_j (d<img, y>/d ws[:, l, j])^2) -> [N]; keeps the graph (the penalty is trained)."""
    (grad,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)  # [N, num_ws, w_dim]
    return grad.square().sum(2).mean(1).sqrt()


class StyleTerms(nn.Module):
    """StyleGAN2's G-side training terms, for the task object: style-mixing draws and the lazy path-length
    penalty. A module (no parameters) so that the moving mean of the path lengths is a buffer the engine
    checkpoints with the nets."""

    def __init__(self, *, style_mixing: float, pl_weight: float, pl_every: int, pl_decay: float,
                 pl_batch_shrink: int, **_arch):  # _arch: G's and D's settings
        super().__init__()
        self.style_mixing, self.pl_weight, self.pl_every = style_mixing, pl_weight, pl_every
        self.pl_decay, self.pl_batch_shrink = pl_decay, pl_batch_shrink
        self.register_buffer("pl_mean", torch.zeros(()))

    def mixing(self, G: StyleGAN2Generator, batch: int, rows, generator: torch.Generator):
        """(z2 [b, z_dim], cutoff 0-dim) for G's mix argument, or None when style_mixing is 0. One cutoff
        per batch in [1, num_ws), num_ws (no mixing) with probability 1 - style_mixing; z2 of the `batch`
        rows, of which this process keeps `rows`."""
        if not self.style_mixing:
            return None
        dev = generator.device
        z2 = torch.randn(batch, G.z_dim, device=dev, generator=generator)[rows]
        cutoff = torch.randint(1, G.num_ws, (), device=dev, generator=generator)
        keep = torch.rand((), device=dev, generator=generator) < self.style_mixing
        return z2, torch.where(keep, cutoff, torch.full_like(cutoff, G.num_ws))

    def path_length_penalty(self, G: nn.Module, plain_G: StyleGAN2Generator, z: torch.Tensor,
                            c: torch.Tensor | None, streams: dict[str, torch.Generator]):
        """The lazy path-length penalty (times pl_every) on the first b / pl_batch_shrink of z, c and its
        stats; updates the moving mean. G: the network to call (DDP-wrapped or not), plain_G: the module."""
        n = max(1, z.shape[0] // self.pl_batch_shrink)
        z, c = z[:n], None if c is None else c[:n]
        mix = self.mixing(plain_G, n, slice(None), streams["mix"])
        img, ws = G(z, c, mix=mix, noise=streams["noise"], return_ws=True)
        H, W = img.shape[2:]
        y = torch.randn(img.shape, device=img.device, generator=streams["pl"]) / math.sqrt(H * W)
        lengths = path_lengths(img, ws, y)  # [n]
        mean = self.pl_mean.lerp(lengths.mean(), self.pl_decay)
        self.pl_mean.copy_(mean.detach())
        penalty = (lengths - mean).square().mean()
        return penalty * (self.pl_weight * self.pl_every), {"pl_penalty": penalty.detach() * self.pl_every}
