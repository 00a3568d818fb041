"""x4 super-resolution as a task object: SRResNet trained for PSNR, then fine-tuned as a GAN (ESRGAN's
two-stage recipe, as BasicSR runs it), stepped by the one engine (train/engine.py).

A batch: HR crops drawn from the train images (crops.CropSampler), their LR images made by degrade.downscale
(quantised to uint8), both on the device from the "data" stream.

    stage psnr  one phase, "G": L1(SR, HR)
    stage gan   "D": the adversarial loss (a losses.LOSSES entry; ESRGAN's is ragan) on D(HR) and D(SR)
                "G": l1 * L1 + perceptual * L1(phi(SR), phi(HR)) + adversarial * L_adv, phi the judge's last
                     convolution before its activation (ESRGAN's VGG features before the ReLU; here the
                     label-free judge's, since no VGG weights can be downloaded), frozen
The D step's SR forward keeps its graph for the G phase, as tasks/generation.py does with its fakes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ganforge.losses import LOSSES, make_loss
from ganforge.sampling import make_grid
from ganforge.superres.crops import CropSampler
from ganforge.superres.degrade import bicubic, downscale, to_uint8, to_unit
from ganforge.superres.nets import PatchDiscriminator, SRResNet
from ganforge.train.engine import Phase, stream_seed
from ganforge.train.fast import FastPath

PICTURE_CROPS = 4  # the report's picture: this many fixed crops, each a row LR | bicubic | SR | HR
BETAS = (0.9, 0.99)  # BasicSR's Adam for both stages


def perceptual_features(judge: nn.Module) -> nn.Module:
    """The judge's convolutional body up to its last convolution + BatchNorm, before the ReLU and the
    flattening: spatial features [B, 64, H', W'] of an image of any size, frozen, in eval mode."""
    body = nn.Sequential(*list(judge.body)[:-2]).eval()
    body.requires_grad_(False)
    return body


class SuperResolution:
    output = "G"
    reg_every = 1

    def __init__(self, s, stage: str, images: list[np.ndarray], *, scale: int, seed: int, device,
                 judge: nn.Module | None = None, init: dict | None = None, fast_path: FastPath):
        # s: the set's validated settings (config.SRSet); images: the train split, uint8 [C, H, W] each;
        # init: the PSNR model's weights (stage gan starts from them); judge: the perceptual space (stage gan)
        self.s, self.stage, self.scale, self.fast_path = s, stage, scale, fast_path
        t = s.psnr if stage == "psnr" else s.gan
        self.batch_size = t.batch_size
        self.sampler = CropSampler(images, s.crop, s.augment, device)
        torch.manual_seed(stream_seed(seed, f"init/{stage}"))
        self.G = SRResNet(images[0].shape[0], scale, s.blocks, s.width)
        if init is not None:
            self.G.load_state_dict(init)
        self.G = self.G.to(device).train()
        self.nets: dict[str, nn.Module] = {"G": self.G}
        self.optimizers = {"G": torch.optim.Adam(self.G.parameters(), lr=t.lr, betas=BETAS)}
        self.generators = {"data": torch.Generator(device).manual_seed(stream_seed(seed, f"data/{stage}"))}
        if stage == "psnr":
            self.phases = (Phase("G", "G"),)
            self.stat_keys = self.watch = ("l1",)
        else:
            self.D = PatchDiscriminator(images[0].shape[0], t.d_channels).to(device).train()
            self.nets["D"] = self.D
            self.optimizers["D"] = torch.optim.Adam(self.D.parameters(), lr=t.d_lr, betas=BETAS)
            self.phases = (Phase("D", "D"), Phase("G", "G"))
            self.loss = make_loss(t.loss, LOSSES[t.loss].Settings())
            self.phi = perceptual_features(judge).to(device)
            self.weights = (t.l1, t.perceptual, t.adversarial)
            self.stat_keys = ("loss_d", *self.loss.D_STATS, "loss_g", "l1", "perceptual", "adversarial",
                              *self.loss.G_STATS)
            self.watch = ("loss_d", "loss_g")
        fast_path.prepare(*self.nets.values())
        self.items_per_step = t.batch_size  # HR crops per step: kimg counts them
        self.divergence_hint = f"lower superres.sets.<set>.{stage}.lr?"
        fixed = CropSampler(images, s.crop, False, "cpu")
        self.fixed_hr = fixed.draw(PICTURE_CROPS, torch.Generator().manual_seed(stream_seed(seed, "fixed")))
        self._kept = None

    def on_resume(self, step: int) -> None:
        pass  # one process: the checkpoint holds every stream

    def draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(HR float [B, C, crop, crop], LR float [B, C, crop / scale, crop / scale]), both in [0, 1]."""
        hr = self.sampler.draw(self.batch_size, self.generators["data"])
        return to_unit(hr), to_unit(downscale(hr, self.scale))

    def accumulate_gradients(self, phase: str, index: int, regularize: bool) -> dict[str, torch.Tensor]:
        if self.stage == "psnr":
            hr, lr = self.draw()
            l1 = (self.G(lr) - hr).abs().mean()
            l1.backward()
            return {"l1": l1.detach()}
        if phase == "D":
            hr, lr = self.draw()
            sr = self.G(lr)  # its graph serves the G phase
            loss_d, stats = self.loss.d_loss(self.D(hr), self.D(sr.detach()))
            loss_d.backward()
            self._kept = (hr, sr)
            return {"loss_d": loss_d.detach(), **stats}
        hr, sr = self._kept
        self.D.requires_grad_(False)  # the G phase steps G only: no D gradients to compute
        adversarial, stats = self.loss.g_loss(self.D(sr), self.D(hr) if self.loss.G_NEEDS_REAL else None)
        l1 = (sr - hr).abs().mean()
        perceptual = (self.phi(sr * 2 - 1) - self.phi(hr * 2 - 1)).abs().mean()
        w_l1, w_p, w_adv = self.weights
        loss_g = w_l1 * l1 + w_p * perceptual + w_adv * adversarial
        loss_g.backward()
        self.D.requires_grad_(True)
        self._kept = None
        return {"loss_g": loss_g.detach(), "l1": l1.detach(), "perceptual": perceptual.detach(),
                "adversarial": adversarial.detach(), **stats}

    @torch.no_grad()
    def picture(self, net: nn.Module) -> np.ndarray:
        """One row per fixed crop: LR (nearest-enlarged) | bicubic | SR | HR."""
        dev = next(net.parameters()).device
        hr = self.fixed_hr.to(dev)
        lr = downscale(hr, self.scale)
        rows = [lr.repeat_interleave(self.scale, -1).repeat_interleave(self.scale, -2),
                to_uint8(bicubic(to_unit(lr), self.scale)), to_uint8(net(to_unit(lr))), hr]
        return make_grid(torch.stack(rows, 1).flatten(0, 1).cpu().numpy(), nrow=len(rows))
