"""The loss objects and D regularisers against their papers' formulas.

Losses are pure maths on D's raw outputs [B] (logits, critic values, scores): they are fed OUT_REAL /
OUT_FAKE directly, and every expected value below is computed by hand from them.
Regularisers are given D as a callable D(x, c) -> [B]: a linear D(x) = <w, x> + b, whose input gradient is w
for every image (so ||grad|| = ||w|| in closed form), its conditional twin <w_c, x> + b (the gradient of
image i is w_{c_i}: which classes a penalty uses shows in its value), and small nonlinear Ds (one
unconditional, one projection-conditional) checked against torch.autograd.functional.jacobian.
The contract every registered entry meets is in test_loss_contract.py.
"""

import math
import re

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from ganforge.errors import ConfigError
from ganforge.losses import (
    LOSSES,
    REGULARIZERS,
    PenaltySettings,
    constraint_warning,
    make_loss,
    make_regularizers,
    regularizer_names,
)
from ganforge.losses.label import LabelMatching
from ganforge.losses.r1 import R1Penalty
from ganforge.losses.r2 import R2Penalty

OUT_REAL = torch.tensor([2.0, -1.0, 0.0, 4.5, -3.0], dtype=torch.float64)
OUT_FAKE = torch.tensor([-2.5, 0.5, 1.0, -6.0, 3.0], dtype=torch.float64)
MARGIN = [4.5, -1.5, -1.0, 10.5, -6.0]  # OUT_REAL - OUT_FAKE, element by element (mean 1.3)
B = len(OUT_REAL)


def grads_of(loss_name: str, phase: str):
    """d loss / d output for each input: ([B] real, [B] fake) in the D phase, [B] fake in the G phase (where
    a G_NEEDS_REAL loss is also given the real outputs, as constants: the reals are data, D is frozen)."""
    loss_fn = make_loss(loss_name)
    real, fake = OUT_REAL.clone().requires_grad_(True), OUT_FAKE.clone().requires_grad_(True)
    if phase == "d":
        loss, _ = loss_fn.d_loss(real, fake)
        return torch.autograd.grad(loss, (real, fake))
    loss, _ = loss_fn.g_loss(fake, OUT_REAL if loss_fn.G_NEEDS_REAL else None)
    return torch.autograd.grad(loss, fake)[0]


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


# --- the original GAN: ns and minimax ---------------------------------------------------------------------

def test_d_loss_is_the_papers_formula_for_both_kinds():
    p_real, p_fake = torch.sigmoid(OUT_REAL), torch.sigmoid(OUT_FAKE)
    expected = -(torch.log(p_real) + torch.log(1 - p_fake)).mean()  # -(1/k) sum[log D(x) + log(1 - D(G(z)))]
    for kind in ("ns", "minimax"):
        loss, stats = make_loss(kind).d_loss(OUT_REAL, OUT_FAKE)
        torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(stats["d_real"], p_real.mean().float())
        torch.testing.assert_close(stats["d_fake"], p_fake.mean().float())


def test_g_losses_are_their_formulas():
    p_fake = torch.sigmoid(OUT_FAKE)
    minimax, minimax_stats = make_loss("minimax").g_loss(OUT_FAKE, None)
    ns, ns_stats = make_loss("ns").g_loss(OUT_FAKE, None)
    torch.testing.assert_close(minimax, torch.log(1 - p_fake).mean())
    torch.testing.assert_close(ns, -torch.log(p_fake).mean())
    assert minimax_stats == {} and ns_stats == {}


def test_losses_stay_finite_where_the_naive_formula_overflows():
    # sigmoid(40) == 1.0 in float32, so log(1 - D) is -inf; the logit form gives the exact value 40
    logits = torch.tensor([40.0, -40.0])
    assert torch.isinf(torch.log(1 - torch.sigmoid(logits))).any()
    loss, _ = make_loss("ns").d_loss(-logits, logits)  # real scored -40/40, fake 40/-40
    assert torch.isfinite(loss) and loss.item() == pytest.approx((40 + 40 + 2 * 4.2e-18) / 2, rel=1e-6)


def test_minimax_saturates_where_ns_does_not():
    # D confidently rejects the fakes (logit -8): minimax gives G almost no gradient, ns ~1 per image
    logits = torch.full((4,), -8.0, requires_grad=True)
    grads = {}
    for kind in ("minimax", "ns"):
        loss, _ = make_loss(kind).g_loss(logits, None)
        (g,) = torch.autograd.grad(loss, logits)
        grads[kind] = g.abs().sum().item()
    assert grads["minimax"] < 1e-3 < 0.99 < grads["ns"]


# --- hinge, wgan, lsgan on hand-computed values ------------------------------------------------------------

def test_hinge_is_lim_and_ye():
    # relu(1 - real) = [0, 2, 1, 0, 4] -> 7/5;  relu(1 + fake) = [0, 1.5, 2, 0, 4] -> 7.5/5;  sum 2.9
    loss, stats = make_loss("hinge").d_loss(OUT_REAL, OUT_FAKE)
    assert loss.item() == pytest.approx(2.9, abs=1e-12)
    assert stats["logit_real"].item() == pytest.approx(0.5)
    assert stats["logit_fake"].item() == pytest.approx(-0.8)
    g_loss, _ = make_loss("hinge").g_loss(OUT_FAKE, None)
    assert g_loss.item() == pytest.approx(0.8, abs=1e-12)  # -mean(fake) = -(-4 / 5)


def test_hinge_gradient_signs():
    # D descends: raises real scores still under the margin +1, lowers fake scores still above -1, ignores
    # the rest (zero gradient past the margin). G descends -E[D(G(z))]: always raises the fake scores.
    d_real, d_fake = grads_of("hinge", "d")
    inside_real, inside_fake = OUT_REAL < 1, OUT_FAKE > -1
    torch.testing.assert_close(d_real, torch.where(inside_real, -1.0 / B, 0.0).double())
    torch.testing.assert_close(d_fake, torch.where(inside_fake, 1.0 / B, 0.0).double())
    torch.testing.assert_close(grads_of("hinge", "g"), torch.full((B,), -1.0 / B, dtype=torch.float64))


def test_wgan_is_the_critic_difference_and_reports_the_wasserstein_estimate():
    # mean real 0.5, mean fake -0.8: L_d = -0.8 - 0.5 = -1.3, the estimate E[D(x)] - E[D(G(z))] = 1.3
    loss, stats = make_loss("wgan").d_loss(OUT_REAL, OUT_FAKE)
    assert loss.item() == pytest.approx(-1.3, abs=1e-12)
    assert stats["wasserstein"].item() == pytest.approx(1.3)
    assert stats["critic_real"].item() == pytest.approx(0.5)
    assert stats["critic_fake"].item() == pytest.approx(-0.8)
    g_loss, _ = make_loss("wgan").g_loss(OUT_FAKE, None)
    assert g_loss.item() == pytest.approx(0.8, abs=1e-12)


def test_wgan_gradient_signs():
    # the critic raises every real score and lowers every fake one by the same 1/B: no margin, no saturation
    d_real, d_fake = grads_of("wgan", "d")
    torch.testing.assert_close(d_real, torch.full((B,), -1.0 / B, dtype=torch.float64))
    torch.testing.assert_close(d_fake, torch.full((B,), 1.0 / B, dtype=torch.float64))
    torch.testing.assert_close(grads_of("wgan", "g"), torch.full((B,), -1.0 / B, dtype=torch.float64))


def test_lsgan_is_mao_et_al_with_the_0_1_coding():
    # (real - 1)^2 = [1, 4, 1, 12.25, 16] -> 6.85;  fake^2 = [6.25, .25, 1, 36, 9] -> 10.5
    # L_d = (6.85 + 10.5) / 2
    loss, stats = make_loss("lsgan").d_loss(OUT_REAL, OUT_FAKE)
    assert loss.item() == pytest.approx(8.675, abs=1e-12)
    assert stats["score_real"].item() == pytest.approx(0.5)
    assert stats["score_fake"].item() == pytest.approx(-0.8)
    # (fake - 1)^2 = [12.25, .25, 0, 49, 4] -> 13.1;  L_g = 13.1 / 2
    g_loss, _ = make_loss("lsgan").g_loss(OUT_FAKE, None)
    assert g_loss.item() == pytest.approx(6.55, abs=1e-12)
    # its gradient pulls each score linearly to its target (unlike a sigmoid loss, no saturation far away)
    torch.testing.assert_close(grads_of("lsgan", "g"), (OUT_FAKE - 1) / B)


# --- RpGAN: the relativistic pairing loss ------------------------------------------------------------------

def test_rpgan_is_the_paired_softplus_of_the_margin():
    # m_i = real_i - fake_i = [4.5, -1.5, -1, 10.5, -6];  L_d = mean softplus(-m),  L_g = mean softplus(m)
    loss_fn = make_loss("rpgan")
    assert loss_fn.G_NEEDS_REAL is True
    loss, stats = loss_fn.d_loss(OUT_REAL, OUT_FAKE)
    assert loss.item() == pytest.approx(sum(softplus(-m) for m in MARGIN) / B, rel=1e-12)
    assert stats["margin_d"].item() == pytest.approx(1.3)
    g_loss, g_stats = loss_fn.g_loss(OUT_FAKE, OUT_REAL)
    assert g_loss.item() == pytest.approx(sum(softplus(m) for m in MARGIN) / B, rel=1e-12)
    assert g_stats["margin_g"].item() == pytest.approx(1.3)
    # softplus(-m) - softplus(m) = -m: the two losses differ by exactly the mean margin
    assert (loss - g_loss).item() == pytest.approx(-1.3, abs=1e-12)


def test_rpgan_pairs_the_ith_real_with_the_ith_fake():
    loss_fn = make_loss("rpgan")
    loss, _ = loss_fn.d_loss(OUT_REAL, OUT_FAKE)
    perm = torch.tensor([3, 0, 4, 1, 2])
    same_pairs, _ = loss_fn.d_loss(OUT_REAL[perm], OUT_FAKE[perm])  # the same pairs in another order
    torch.testing.assert_close(same_pairs, loss, rtol=1e-12, atol=1e-12)
    other_pairs, _ = loss_fn.d_loss(OUT_REAL, OUT_FAKE.roll(1))  # the same outputs, paired differently
    assert abs(other_pairs.item() - loss.item()) > 0.1
    # not the unpaired (mean against mean) form: softplus(-(mean real - mean fake)) = softplus(-1.3)
    assert abs(loss.item() - softplus(-1.3)) > 0.1


def test_rpgan_gradient_signs():
    # D descends: raises every real score and lowers every fake one, by sigmoid(-m_i) / B (most where the
    # pair is misranked); G descends: raises every fake score, by sigmoid(m_i) / B
    d_real, d_fake = grads_of("rpgan", "d")
    d_weight = torch.tensor([sigmoid(-m) for m in MARGIN], dtype=torch.float64) / B
    assert (d_real < 0).all() and (d_fake > 0).all()
    torch.testing.assert_close(d_real, -d_weight)
    torch.testing.assert_close(d_fake, d_weight)
    g_fake = grads_of("rpgan", "g")
    assert (g_fake < 0).all()
    torch.testing.assert_close(g_fake, -torch.tensor([sigmoid(m) for m in MARGIN], dtype=torch.float64) / B)


def test_rpgan_matches_a_direct_torch_formula_on_random_outputs():
    gen = torch.Generator().manual_seed(11)
    real, fake = 4 * torch.randn(256, generator=gen), 4 * torch.randn(256, generator=gen)
    loss_fn = make_loss("rpgan")
    loss_d, _ = loss_fn.d_loss(real, fake)
    loss_g, _ = loss_fn.g_loss(fake, real)
    torch.testing.assert_close(loss_d, -F.logsigmoid(real - fake).mean())
    torch.testing.assert_close(loss_g, -F.logsigmoid(fake - real).mean())
    torch.testing.assert_close(loss_d, F.softplus(fake - real).mean())


def test_rpgan_stays_finite_at_large_margins():
    real = torch.tensor([60.0, -60.0], requires_grad=True)
    fake = torch.tensor([-60.0, 60.0], requires_grad=True)
    loss, _ = make_loss("rpgan").d_loss(real, fake)  # margins +120 (exp overflows nothing) and -120
    assert torch.isfinite(loss) and loss.item() == pytest.approx(60.0, rel=1e-6)
    assert all(torch.isfinite(g).all() for g in torch.autograd.grad(loss, (real, fake)))


def test_only_the_relativistic_loss_reads_the_real_outputs_in_the_g_phase():
    assert LOSSES["rpgan"].G_NEEDS_REAL is True
    for name in ("ns", "minimax", "hinge", "wgan", "lsgan"):
        assert LOSSES[name].G_NEEDS_REAL is False, name
        # out_real is None for them, and would change nothing if given
        with_real, _ = make_loss(name).g_loss(OUT_FAKE, OUT_REAL)
        assert torch.equal(make_loss(name).g_loss(OUT_FAKE, None)[0], with_real)


# --- flags and names ----------------------------------------------------------------------------------------

def test_only_the_wgan_critic_is_unbounded_and_needs_a_constraint():
    flags = {name: (LOSSES[name].UNBOUNDED_OUTPUT, LOSSES[name].NEEDS_CONSTRAINT)
             for name in ("ns", "minimax", "hinge", "wgan", "lsgan", "rpgan")}
    assert flags == {"ns": (False, False), "minimax": (False, False), "hinge": (False, False),
                     "wgan": (True, True), "lsgan": (False, False), "rpgan": (False, False)}


def test_an_unconstrained_critic_is_warned_about():
    assert "train.loss wgan without a Lipschitz constraint" in constraint_warning("wgan", "none", False)
    assert "train.loss wgan" in constraint_warning("wgan", "r1+r2", False)
    assert constraint_warning("wgan", "gp", False) is None
    assert constraint_warning("wgan", "r1+gp", False) is None  # gp among several penalties
    assert constraint_warning("wgan", "none", True) is None  # spectral norm on D
    assert constraint_warning("hinge", "none", False) is None


def test_unknown_loss_is_a_config_error_listing_the_registry():
    allowed = re.escape(", ".join(LOSSES))
    with pytest.raises(ConfigError, match=rf"loss 'wgan-gp' .*allowed: {allowed}\)"):
        make_loss("wgan-gp")


# --- D regularisers -----------------------------------------------------------------------------------------

def settings(weight: float = 10.0, every: int = 1) -> PenaltySettings:
    return PenaltySettings(weight=weight, every=every)


def reg(name: str, weight: float = 10.0, every: int = 1):
    return REGULARIZERS[name](settings(weight, every))


class LinearD(nn.Module):
    """D(x, c) = <w, x> + b per image (c ignored): grad_x D(x) = w for every x, so ||grad|| = ||w||."""

    def __init__(self, w: torch.Tensor):  # w: [C, H, W]
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(torch.tensor(0.3, dtype=w.dtype))

    def forward(self, x, c=None):  # [B, C, H, W] -> [B]
        return (x * self.w).flatten(1).sum(1) + self.b


class ConditionalLinearD(nn.Module):
    """D(x, c) = <w_c, x> + b: the input gradient of image i is w_{c_i}, whatever x is."""

    def __init__(self, w: torch.Tensor):  # w: [K, C, H, W]
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(torch.tensor(-0.2, dtype=w.dtype))

    def forward(self, x, c):
        return (x * self.w[c]).flatten(1).sum(1) + self.b


class SmallD(nn.Module):
    """A small nonlinear D on [B, 2, 4, 4]; with classes, a projection head (Miyato & Koyama 2018):
    D(x, c) = head(h) + <embed(c), h>, h the features."""

    def __init__(self, num_classes: int = 0):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(),
                                      nn.Linear(3 * 4 * 4, 6), nn.Tanh())
        self.head = nn.Linear(6, 1)
        self.embed = nn.Embedding(num_classes, 6) if num_classes else None
        self.double()

    def forward(self, x, c=None):
        h = self.features(x)
        out = self.head(h)[:, 0]
        return out if c is None else out + (self.embed(c) * h).sum(1)


def per_image_input_gradients(D: nn.Module, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
    """dD(x_i, c_i)/dx_i of each image, by torch.autograd.functional.jacobian one image at a time:
    [B, C, H, W]."""
    def one(i):
        ci = None if c is None else c[i:i + 1]
        return torch.autograd.functional.jacobian(lambda xi: D(xi[None], ci)[0], x[i])

    return torch.stack([one(i) for i in range(len(x))])


W = torch.tensor([[[0.5, -1.0], [2.0, 0.25]]], dtype=torch.float64)  # [1, 2, 2], ||w||^2 = 5.3125
# one w per class [3, 1, 2, 2]: ||w_k||^2 = 5.3125, 1, 16
W_K = torch.stack([W, torch.tensor([[[0.0, 1.0], [0.0, 0.0]]], dtype=torch.float64),
                   torch.tensor([[[2.0, 0.0], [0.0, 2.0 * 3**0.5]]], dtype=torch.float64)])
SQ_NORMS = torch.tensor([5.3125, 1.0, 16.0], dtype=torch.float64)
X_REAL = torch.randn(3, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
X_FAKE = torch.randn(3, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
C_REAL = torch.tensor([0, 0, 2])  # mean ||w_c||^2 = (5.3125 + 5.3125 + 16) / 3
C_FAKE = torch.tensor([1, 1, 1])  # mean ||w_c||^2 = 1
X4_REAL = torch.randn(4, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
X4_FAKE = torch.randn(4, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))


def test_r1_is_gamma_half_the_squared_gradient_norm_and_trains_d():
    D = LinearD(W)
    penalty, stats = reg("r1").penalty(D, X_REAL, None, X_FAKE, None, None)
    assert penalty.item() == pytest.approx(5.0 * 5.3125, rel=1e-12)  # gamma/2 * ||w||^2
    assert stats["r1_penalty"].item() == pytest.approx(5.0 * 5.3125, rel=1e-12)
    assert stats["r1_grad_norm"].item() == pytest.approx(5.3125**0.5, rel=1e-6)
    # create_graph: the penalty is differentiable in D's weights, d/dw gamma/2 ||w||^2 = gamma * w
    (grad_w,) = torch.autograd.grad(penalty, D.w)
    torch.testing.assert_close(grad_w, 10.0 * W)


def test_r1_matches_the_jacobian_of_a_nonlinear_d():
    D = SmallD()
    jac = per_image_input_gradients(D, X4_REAL)  # [4, 2, 4, 4]
    expected = 0.5 * 2.0 * jac.square().flatten(1).sum(1).mean()
    penalty, _ = reg("r1", weight=2.0).penalty(D, X4_REAL, None, X4_REAL.flip(0), None, None)
    torch.testing.assert_close(penalty, expected, rtol=1e-10, atol=1e-12)


def test_r1_looks_at_the_real_images_only():
    D = SmallD()
    r1 = reg("r1")
    penalty, _ = r1.penalty(D, X4_REAL, None, X4_FAKE, None, None)
    other_fakes, _ = r1.penalty(D, X4_REAL, None, X4_FAKE.flip(0) * 3, None, None)
    assert torch.equal(penalty, other_fakes)
    other_reals, _ = r1.penalty(D, X4_FAKE, None, X4_FAKE, None, None)
    assert other_reals.item() != penalty.item()


def test_r2_is_gamma_half_the_squared_gradient_norm_on_fakes_and_flattens_d():
    D = LinearD(W)
    penalty, stats = reg("r2").penalty(D, X_REAL, None, X_FAKE, None, None)
    assert penalty.item() == pytest.approx(5.0 * 5.3125, rel=1e-12)  # gamma/2 * ||w||^2
    assert stats["r2_penalty"].item() == pytest.approx(5.0 * 5.3125, rel=1e-12)
    assert stats["r2_grad_norm"].item() == pytest.approx(5.3125**0.5, rel=1e-6)
    # it trains D: d/dw gamma/2 ||w||^2 = gamma * w, so a descent step shrinks D's slope ||w||
    (grad_w,) = torch.autograd.grad(penalty, D.w)
    torch.testing.assert_close(grad_w, 10.0 * W)
    assert (grad_w * W).sum() > 0
    assert (W - 0.01 * grad_w).norm() < W.norm()


def test_r2_matches_the_jacobian_of_a_nonlinear_d_at_the_fakes():
    D = SmallD()
    jac = per_image_input_gradients(D, X4_FAKE)
    expected = 0.5 * 2.0 * jac.square().flatten(1).sum(1).mean()
    penalty, stats = reg("r2", weight=2.0).penalty(D, X4_REAL, None, X4_FAKE, None, None)
    torch.testing.assert_close(penalty, expected, rtol=1e-10, atol=1e-12)
    # the stat is E||grad||, as an fp32 0-dim tensor
    torch.testing.assert_close(stats["r2_grad_norm"], jac.flatten(1).norm(dim=1).mean().float())


def test_r2_does_not_depend_on_the_real_images():
    D = SmallD()
    r2 = reg("r2")
    penalty, _ = r2.penalty(D, X4_REAL, None, X4_FAKE, None, None)
    other_reals, _ = r2.penalty(D, -3 * X4_REAL.flip(0), None, X4_FAKE, None, None)
    assert torch.equal(penalty, other_reals)
    other_fakes, _ = r2.penalty(D, X4_REAL, None, X4_REAL, None, None)
    assert other_fakes.item() != penalty.item()
    # R1's twin: R2 on (reals, fakes) is R1 with the two batches swapped
    r1_swapped, _ = reg("r1").penalty(D, X4_FAKE, None, X4_REAL, None, None)
    torch.testing.assert_close(penalty, r1_swapped, rtol=0, atol=0)


def test_penalties_judge_each_image_with_its_own_class():
    # <w_c, x>: R1 and GP read the real classes, R2 the fake ones (the gradient of image i is w_{c_i})
    D = ConditionalLinearD(W_K)
    real_sq, fake_sq = SQ_NORMS[C_REAL], SQ_NORMS[C_FAKE]  # [3] each
    r1, _ = reg("r1").penalty(D, X_REAL, C_REAL, X_FAKE, C_FAKE, None)
    r2, _ = reg("r2").penalty(D, X_REAL, C_REAL, X_FAKE, C_FAKE, None)
    gp, gp_stats = reg("gp").penalty(D, X_REAL, C_REAL, X_FAKE, C_FAKE, torch.Generator().manual_seed(0))
    assert r1.item() == pytest.approx(5.0 * real_sq.mean().item(), rel=1e-12)
    assert r2.item() == pytest.approx(5.0 * fake_sq.mean().item(), rel=1e-12)
    assert gp.item() == pytest.approx(10.0 * (real_sq.sqrt() - 1).square().mean().item(), rel=1e-12)
    assert gp_stats["gp_grad_norm"].item() == pytest.approx(real_sq.sqrt().mean().item(), rel=1e-6)


@pytest.mark.parametrize("name", ["r1", "r2"])
def test_squared_penalties_match_the_jacobian_of_a_conditional_d(name):
    D = SmallD(num_classes=3)
    c_real, c_fake = torch.tensor([0, 1, 2, 1]), torch.tensor([2, 2, 0, 1])
    x, c = (X4_REAL, c_real) if name == "r1" else (X4_FAKE, c_fake)
    jac = per_image_input_gradients(D, x, c)
    expected = 0.5 * 3.0 * jac.square().flatten(1).sum(1).mean()
    penalty, _ = reg(name, weight=3.0).penalty(D, X4_REAL, c_real, X4_FAKE, c_fake, None)
    torch.testing.assert_close(penalty, expected, rtol=1e-10, atol=1e-12)
    # with the other batch's classes the value is another one: the classes are read
    swapped, _ = reg(name, weight=3.0).penalty(D, X4_REAL, c_fake, X4_FAKE, c_real, None)
    assert abs(swapped.item() - penalty.item()) > 1e-6


@pytest.mark.parametrize("name", ["r1", "r2", "gp"])
def test_lazy_penalties_multiply_the_loss_by_their_interval_but_not_the_stats(name):
    D = SmallD()
    every_step, stats1 = reg(name, every=1).penalty(D, X4_REAL, None, X4_FAKE, None,
                                                    torch.Generator().manual_seed(3))
    lazy, stats16 = reg(name, every=16).penalty(D, X4_REAL, None, X4_FAKE, None,
                                                torch.Generator().manual_seed(3))
    torch.testing.assert_close(lazy, 16 * every_step, rtol=1e-12, atol=0)
    assert stats16.keys() == stats1.keys() == set(REGULARIZERS[name].STATS)
    for key in stats1:
        assert torch.equal(stats16[key], stats1[key]), key
    assert stats1[f"{name}_penalty"].item() == pytest.approx(every_step.item(), rel=1e-12)


def test_lazy_r1_on_the_linear_d():
    D = LinearD(W)
    every_step, stats1 = reg("r1", every=1).penalty(D, X_REAL, None, X_FAKE, None, None)
    lazy, stats16 = reg("r1", every=16).penalty(D, X_REAL, None, X_FAKE, None, None)
    torch.testing.assert_close(lazy, 16 * every_step)
    assert stats16["r1_penalty"].item() == stats1["r1_penalty"].item() == pytest.approx(5.0 * 5.3125)


def test_gp_is_lambda_times_the_squared_distance_of_the_norm_from_1():
    # linear D: the gradient is w at every interpolate, so GP = lambda (||w|| - 1)^2 whatever eps is
    D = LinearD(W)
    gen = torch.Generator().manual_seed(0)
    penalty, stats = reg("gp").penalty(D, X_REAL, None, X_FAKE, None, gen)
    norm = 5.3125**0.5
    assert penalty.item() == pytest.approx(10.0 * (norm - 1) ** 2, rel=1e-12)
    assert stats["gp_penalty"].item() == pytest.approx(10.0 * (norm - 1) ** 2, rel=1e-12)
    assert stats["gp_grad_norm"].item() == pytest.approx(norm, rel=1e-6)
    # d/dw lambda (||w|| - 1)^2 = 2 lambda (||w|| - 1) w / ||w||
    (grad_w,) = torch.autograd.grad(penalty, D.w)
    torch.testing.assert_close(grad_w, 2 * 10.0 * (norm - 1) * W / norm)


def test_gp_interpolates_with_eps_from_the_given_generator():
    D = SmallD()
    gp = reg("gp")
    penalty, _ = gp.penalty(D, X4_REAL, None, X4_FAKE, None, torch.Generator().manual_seed(7))
    # by hand: the same draw, eps ~ U[0, 1] per image [4, 1, 1, 1], and jacobians at the interpolates
    eps = torch.rand(4, 1, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    jac = per_image_input_gradients(D, eps * X4_REAL + (1 - eps) * X4_FAKE)
    expected = 10.0 * (jac.flatten(1).norm(dim=1) - 1).square().mean()
    torch.testing.assert_close(penalty, expected, rtol=1e-10, atol=1e-12)
    other, _ = gp.penalty(D, X4_REAL, None, X4_FAKE, None, torch.Generator().manual_seed(8))
    assert other.item() != penalty.item()  # another generator state, other interpolates


def test_no_regulariser_adds_an_exact_zero():
    r = reg("none", weight=1.0, every=1)
    penalty, stats = r.penalty(LinearD(W), X_REAL, None, X_FAKE, None, None)
    assert penalty.item() == 0.0 and stats == {} and r.every == 1 and REGULARIZERS["none"].STATS == ()
    assert reg("none", every=16).every == 1  # never applied: its interval does not matter
    loss = OUT_REAL.float().square().mean()
    assert torch.equal(loss + penalty, loss)
    # and the backward of the sum passes the gradient through unchanged, bit for bit
    x = OUT_REAL.float().requires_grad_(True)
    (plain,) = torch.autograd.grad(x.square().mean(), x)
    (with_zero,) = torch.autograd.grad(x.square().mean() + penalty, x)
    assert torch.equal(plain, with_zero)


@pytest.mark.parametrize("kwargs, word", [
    ({"weight": 0.0, "every": 1}, "weight"),
    ({"weight": -1.0, "every": 1}, "weight"),
    ({"weight": 10.0, "every": 0}, "every"),
    ({"weight": 10.0, "every": 1.5}, "every"),
    ({"every": 1}, "weight"),
    ({"weight": 10.0, "every": 1, "gamma": 1.0}, "gamma"),
])
def test_bad_penalty_settings_are_refused_naming_the_key(kwargs, word):
    with pytest.raises(ValidationError, match=word):
        PenaltySettings(**kwargs)


# --- several penalties: train.reg.kind r1+r2 ----------------------------------------------------------------

def test_r1_plus_r2_builds_both_with_the_shared_settings():
    penalties = make_regularizers("r1+r2", settings(weight=4.0, every=8))
    assert [type(p) for p in penalties] == [R1Penalty, R2Penalty]
    assert all(p.weight == 4.0 and p.every == 8 for p in penalties)
    assert regularizer_names("r1+r2") == ["r1", "r2"] and regularizer_names("gp") == ["gp"]
    # with a conditional linear D: R1 reads the reals' classes, R2 the fakes'
    D = ConditionalLinearD(W_K)
    total = sum(p.penalty(D, X_REAL, C_REAL, X_FAKE, C_FAKE, None)[0] for p in penalties)
    expected = 8 * 2.0 * (SQ_NORMS[C_REAL].mean() + SQ_NORMS[C_FAKE].mean())
    assert total.item() == pytest.approx(expected.item(), rel=1e-12)
    assert [make_regularizers(name, settings())[0].STATS for name in ("r1", "r2")] == [
        p.STATS for p in penalties]


@pytest.mark.parametrize("kind, message", [
    ("r1+bogus", "unknown regulariser 'bogus' (allowed: {allowed}, or several joined by +"),
    ("r3", "unknown regulariser 'r3' (allowed: {allowed}"),
    ("r1+", "unknown regulariser '' (allowed: {allowed}"),
    ("none+r1", "'none+r1': none stands alone"),
    ("r1+none", "none stands alone"),
    ("r1+r1", "'r1+r1': each penalty once"),
])
def test_bad_regulariser_kinds_are_config_errors(kind, message):
    needle = message.format(allowed=", ".join(REGULARIZERS))
    for build in (regularizer_names, lambda k: make_regularizers(k, settings())):
        with pytest.raises(ConfigError) as e:
            build(kind)
        assert needle in str(e.value) and e.value.exit_code == 2


# --- the P2GAN class term on D's class logits ---------------------------------------------------------------

def test_label_matching_is_the_weighted_cross_entropy_of_ds_class_logits():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0], [1.0, 1.0, 1.0], [-1.0, 0.0, 4.0]],
                          requires_grad=True)
    y = torch.tensor([0, 2, 1, 2])
    term = LabelMatching(0.5)
    expected_ce = sum(-math.log(math.exp(row[k]) / sum(math.exp(v) for v in row))
                      for row, k in zip(logits.tolist(), y.tolist(), strict=True)) / 4
    d, d_stats = term.d_term(logits, y)
    g, g_stats = term.g_term(logits, y)
    assert d.item() == pytest.approx(0.5 * expected_ce, rel=1e-6) and torch.equal(d, g)
    assert d_stats.keys() == {"class_ce_real"} and g_stats.keys() == {"class_ce_fake"}
    assert d_stats["class_ce_real"].item() == pytest.approx(expected_ce, rel=1e-6)  # not weighted
    assert not d_stats["class_ce_real"].requires_grad and d_stats["class_ce_real"].dim() == 0
    # descending it raises the logit of the labelled class: d/dlogits = w (softmax - onehot) / B
    (grad,) = torch.autograd.grad(d, logits)
    torch.testing.assert_close(grad, 0.5 * (logits.softmax(1) - F.one_hot(y, 3)).detach() / 4)
    # bf16 logits: the CE is computed in fp32
    d16, stats16 = term.d_term(logits.detach().bfloat16(), y)
    assert d16.dtype == torch.float32 and stats16["class_ce_real"].dtype == torch.float32
    assert set(LabelMatching.STATS) == {"class_ce_real", "class_ce_fake"}


@pytest.mark.parametrize("weight", [0.0, -1.0])
def test_label_matching_needs_a_positive_weight(weight):
    with pytest.raises(ConfigError, match="train.label_matching must be > 0"):
        LabelMatching(weight)
