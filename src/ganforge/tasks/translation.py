"""Image-to-image translation as a task object: pix2pix on paired domains, CycleGAN on unpaired ones, as
junyanz/pytorch-CycleGAN-and-pix2pix trains them, stepped by the one engine (train/engine.py).

    pix2pix   G: U-Net A -> B; D: PatchGAN on the pair (A, B) stacked along channels.
              "G": adv(D(a, G(a))) + l1 * |G(a) - b|_1           "D": the loss on D(a, b) and D(a, G(a))
    cyclegan  G_ab, G_ba: ResNet generators; D_a, D_b: PatchGANs; a pool of past fakes per domain.
              "G": adv(D_b(G_ab(a))) + adv(D_a(G_ba(b)))
                   + cycle * (|G_ba(G_ab(a)) - a|_1 + |G_ab(G_ba(b)) - b|_1)
                   + cycle * identity * (|G_ba(a) - a|_1 + |G_ab(b) - b|_1)   (domains of one channel count)
              "D": for each domain, the loss on D(real) and D(a fake from its pool)
The phases run G then D, as junyanz's optimize_parameters does: D learns from the fakes G just made (its
pool's, for CycleGAN). adv and the D loss are a losses.LOSSES entry (CycleGAN's is lsgan, pix2pix's ns); each
PatchGAN score is one judged item. Both generators are one module (Translators), the engine's output: EMA,
pictures and the model file keep both directions together.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ganforge.config import TranslationSettings as Settings
from ganforge.losses import LOSSES, make_loss
from ganforge.sampling import make_grid, to_uint8
from ganforge.train.engine import Phase, stream_seed
from ganforge.translate.nets import ImagePool, PatchDiscriminator, Translators

__all__ = ["ImageTranslation", "Settings", "Translators"]

PICTURE_ROWS = 8  # the report's picture: this many fixed images of each domain


def normal_init(net: nn.Module, std: float = 0.02) -> None:
    """junyanz's init_weights('normal', 0.02): conv weights N(0, 0.02), biases 0."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ImageTranslation:
    output = "G"
    reg_every = 1

    def __init__(self, s: Settings, x_a: np.ndarray, x_b: np.ndarray, *, paired: bool, seed: int, device,
                 fast_path, fixed: tuple[np.ndarray, np.ndarray] | None = None):
        # x_a, x_b: uint8 [N_a, C_a, H, W], [N_b, C_b, H, W]; paired: row i of A and of B show one item.
        # fixed: the images of the pictures (held-out ones, paired when the test split is); None: train ones
        assert s.model == "cyclegan" or (paired and len(x_a) == len(x_b)), "pix2pix trains on pairs"
        self.s, self.paired, self.fast_path = s, paired, fast_path
        ca, cb = x_a.shape[1], x_b.shape[1]
        torch.manual_seed(stream_seed(seed, "init"))
        if s.model == "cyclegan":
            G = Translators("cyclegan", {"channels_in": ca, "channels_out": cb, "width": s.g_width,
                                         "blocks": s.g_blocks},
                            {"channels_in": cb, "channels_out": ca, "width": s.g_width, "blocks": s.g_blocks})
            D = nn.ModuleDict({"a": PatchDiscriminator(ca, s.d_width, s.d_layers),
                               "b": PatchDiscriminator(cb, s.d_width, s.d_layers)})
            self.pools = nn.ModuleDict({"a": ImagePool(s.pool, tuple(x_a.shape[1:])),
                                        "b": ImagePool(s.pool, tuple(x_b.shape[1:]))}).to(device)
        else:
            G = Translators("pix2pix", {"channels_in": ca, "channels_out": cb, "width": s.g_width,
                                        "downs": s.g_downs}, None)
            D = nn.ModuleDict({"b": PatchDiscriminator(ca + cb, s.d_width, s.d_layers)})
            self.pools = None
        normal_init(G)
        normal_init(D)
        self.G, self.D = G.to(device).train(), D.to(device).train()
        self.nets = {"G": self.G, "D": self.D, **({"pools": self.pools} if self.pools is not None else {})}
        betas = (0.5, 0.999)
        self.optimizers = {"G": torch.optim.Adam(self.G.parameters(), lr=s.lr, betas=betas),
                           "D": torch.optim.Adam(self.D.parameters(), lr=s.lr, betas=betas)}
        self.phases = (Phase("G", "G"), Phase("D", "D"))
        self.loss = make_loss(s.loss, LOSSES[s.loss].Settings())
        self.identity = s.model == "cyclegan" and s.identity > 0 and ca == cb
        d_stats = tuple(f"d_{d}.{k}" for d in self.D for k in self.loss.D_STATS)
        g_stats = (("adv_ab", "adv_ba", "cycle_a", "cycle_b", "idt_a", "idt_b") if s.model == "cyclegan"
                   else ("adv", "l1"))
        self.stat_keys = ("loss_g", *g_stats, "loss_d", *d_stats)
        self.watch = ("loss_g", "loss_d")
        self.items_per_step = s.batch_size
        self.divergence_hint = "lower the lr?"
        self.data = {"a": torch.from_numpy(np.ascontiguousarray(x_a)).to(device),
                     "b": torch.from_numpy(np.ascontiguousarray(x_b)).to(device)}
        self.generators = {name: torch.Generator(device).manual_seed(stream_seed(seed, name))
                           for name in ("data", "pool")}
        fixed = (x_a, x_b) if fixed is None else fixed
        n = min(PICTURE_ROWS, len(fixed[0]), len(fixed[1]))
        self.fixed = {d: torch.from_numpy(np.ascontiguousarray(x[:n])).to(device)
                      for d, x in zip(("a", "b"), fixed, strict=True)}
        self._kept = None

    def on_resume(self, step: int) -> None:
        pass  # one process: the checkpoint holds every stream

    def draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(a [B, C_a, H, W], b [B, C_b, H, W]) in [-1, 1]: rows of one item when paired."""
        g, B = self.generators["data"], self.s.batch_size
        ia = torch.randint(len(self.data["a"]), (B,), device=self.data["a"].device, generator=g)
        ib = ia if self.paired else torch.randint(len(self.data["b"]), (B,), device=ia.device, generator=g)
        return self.data["a"][ia].float() / 127.5 - 1, self.data["b"][ib].float() / 127.5 - 1

    def accumulate_gradients(self, phase: str, index: int, regularize: bool) -> dict[str, torch.Tensor]:
        return self._g_phase() if phase == "G" else self._d_phase()

    def _adv(self, D: nn.Module, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return self.loss.g_loss(D(fake), D(real) if self.loss.G_NEEDS_REAL else None)[0]

    def _g_phase(self) -> dict[str, torch.Tensor]:
        s, G, D = self.s, self.G, self.D
        a, b = self.draw()
        D.requires_grad_(False)  # the G phase steps G only
        if s.model == "pix2pix":
            fake_b = G(a)
            adv = self._adv(D["b"], torch.cat([a, fake_b], 1), torch.cat([a, b], 1))
            l1 = (fake_b - b).abs().mean()
            loss_g = adv + s.l1 * l1
            stats = {"adv": adv.detach(), "l1": l1.detach()}
            self._kept = (a, b, None, fake_b.detach())
        else:
            fake_b, fake_a = G(a, "ab"), G(b, "ba")
            cycle_a, cycle_b = (G(fake_b, "ba") - a).abs().mean(), (G(fake_a, "ab") - b).abs().mean()
            adv_ab, adv_ba = self._adv(D["b"], fake_b, b), self._adv(D["a"], fake_a, a)
            zero = torch.zeros((), device=a.device)
            idt_a, idt_b = (((G(a, "ba") - a).abs().mean(), (G(b, "ab") - b).abs().mean()) if self.identity
                            else (zero, zero))
            loss_g = adv_ab + adv_ba + s.cycle * (cycle_a + cycle_b) + s.cycle * s.identity * (idt_a + idt_b)
            stats = {"adv_ab": adv_ab.detach(), "adv_ba": adv_ba.detach(), "cycle_a": cycle_a.detach(),
                     "cycle_b": cycle_b.detach(), "idt_a": idt_a.detach(), "idt_b": idt_b.detach()}
            self._kept = (a, b, fake_a.detach(), fake_b.detach())
        loss_g.backward()
        D.requires_grad_(True)
        return {"loss_g": loss_g.detach(), **stats}

    def _d_phase(self) -> dict[str, torch.Tensor]:
        a, b, fake_a, fake_b = self._kept
        self._kept = None
        if self.s.model == "pix2pix":
            pairs = {"b": (torch.cat([a, b], 1), torch.cat([a, fake_b], 1))}
        else:
            gen = self.generators["pool"]
            pairs = {"b": (b, self.pools["b"](fake_b, gen)), "a": (a, self.pools["a"](fake_a, gen))}
        loss_d, stats = torch.zeros((), device=a.device), {}
        for d, (real, fake) in pairs.items():
            loss, st = self.loss.d_loss(self.D[d](real), self.D[d](fake))
            loss_d = loss_d + loss
            stats.update({f"d_{d}.{k}": v for k, v in st.items()})
        loss_d.backward()
        return {"loss_d": loss_d.detach(), **stats}

    @torch.no_grad()
    def picture(self, net: nn.Module) -> np.ndarray:
        """Columns of the fixed images: A | G_ab(A) | B [| G_ba(B)]: where they are paired (pix2pix's train
        images; the held-out pairs) B is A's ground truth."""
        a, b = (self.fixed[d].float() / 127.5 - 1 for d in ("a", "b"))
        cols = [a, net(a, "ab"), b] + ([net(b, "ba")] if self.s.model == "cyclegan" else [])
        channels = max(x.shape[1] for x in cols)
        cols = [x.expand(-1, channels, -1, -1) for x in cols]  # grey beside colour: repeat the grey
        return make_grid(to_uint8(torch.stack(cols, 1).flatten(0, 1)).cpu().numpy(), nrow=len(cols))
