"""The loss objects and D regularisers against their papers' formulas.

Losses: D is the identity, so the "images" are D's raw outputs themselves (logits, critic values, scores) and
every expected value below is computed by hand from LOGITS_REAL / LOGITS_FAKE.
Regularisers: a linear D(x) = <w, x> + b, whose input gradient is w for every image (so ||grad|| = ||w||
in closed form), and a small nonlinear D checked against torch.autograd.functional.jacobian.
"""

import pytest
import torch
from torch import nn

from ganforge.errors import ConfigError
from ganforge.losses import LOSSES, REGULARIZERS, make_loss, make_regularizer

LOGITS_REAL = torch.tensor([2.0, -1.0, 0.0, 4.5, -3.0], dtype=torch.float64)
LOGITS_FAKE = torch.tensor([-2.5, 0.5, 1.0, -6.0, 3.0], dtype=torch.float64)
B = len(LOGITS_REAL)


def identity(x):
    return x


def grads_of(loss_name: str, phase: str):
    """d loss / d logit for each input: ([B] real, [B] fake) in the D phase, [B] fake in the G phase."""
    real, fake = LOGITS_REAL.clone().requires_grad_(True), LOGITS_FAKE.clone().requires_grad_(True)
    if phase == "d":
        loss, _ = make_loss(loss_name).d_loss(identity, real, fake)
        return torch.autograd.grad(loss, (real, fake))
    loss, _ = make_loss(loss_name).g_loss(identity, fake)
    return torch.autograd.grad(loss, fake)[0]


# --- the original GAN: ns and minimax ---------------------------------------------------------------------

def test_d_loss_is_the_papers_formula_for_both_kinds():
    p_real, p_fake = torch.sigmoid(LOGITS_REAL), torch.sigmoid(LOGITS_FAKE)
    expected = -(torch.log(p_real) + torch.log(1 - p_fake)).mean()  # -(1/k) sum[log D(x) + log(1 - D(G(z)))]
    for kind in ("ns", "minimax"):
        loss, stats = make_loss(kind).d_loss(identity, LOGITS_REAL, LOGITS_FAKE)
        torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(stats["d_real"], p_real.mean().float())
        torch.testing.assert_close(stats["d_fake"], p_fake.mean().float())


def test_g_losses_are_their_formulas():
    p_fake = torch.sigmoid(LOGITS_FAKE)
    minimax, minimax_stats = make_loss("minimax").g_loss(identity, LOGITS_FAKE)
    ns, ns_stats = make_loss("ns").g_loss(identity, LOGITS_FAKE)
    torch.testing.assert_close(minimax, torch.log(1 - p_fake).mean())
    torch.testing.assert_close(ns, -torch.log(p_fake).mean())
    assert minimax_stats == {} and ns_stats == {}


def test_losses_stay_finite_where_the_naive_formula_overflows():
    # sigmoid(40) == 1.0 in float32, so log(1 - D) is -inf; the logit form gives the exact value 40
    logits = torch.tensor([40.0, -40.0])
    assert torch.isinf(torch.log(1 - torch.sigmoid(logits))).any()
    loss, _ = make_loss("ns").d_loss(identity, -logits, logits)  # real scored -40/40, fake 40/-40
    assert torch.isfinite(loss) and loss.item() == pytest.approx((40 + 40 + 2 * 4.2e-18) / 2, rel=1e-6)


def test_minimax_saturates_where_ns_does_not():
    # D confidently rejects the fakes (logit -8): minimax gives G almost no gradient, ns ~1 per image
    logits = torch.full((4,), -8.0, requires_grad=True)
    grads = {}
    for kind in ("minimax", "ns"):
        loss, _ = make_loss(kind).g_loss(identity, logits)
        (g,) = torch.autograd.grad(loss, logits)
        grads[kind] = g.abs().sum().item()
    assert grads["minimax"] < 1e-3 < 0.99 < grads["ns"]


# --- hinge, wgan, lsgan on hand-computed values ------------------------------------------------------------

def test_hinge_is_lim_and_ye():
    # relu(1 - real) = [0, 2, 1, 0, 4] -> 7/5;  relu(1 + fake) = [0, 1.5, 2, 0, 4] -> 7.5/5;  sum 2.9
    loss, stats = make_loss("hinge").d_loss(identity, LOGITS_REAL, LOGITS_FAKE)
    assert loss.item() == pytest.approx(2.9, abs=1e-12)
    assert stats["logit_real"].item() == pytest.approx(0.5)
    assert stats["logit_fake"].item() == pytest.approx(-0.8)
    g_loss, _ = make_loss("hinge").g_loss(identity, LOGITS_FAKE)
    assert g_loss.item() == pytest.approx(0.8, abs=1e-12)  # -mean(fake) = -(-4 / 5)


def test_hinge_gradient_signs():
    # D descends: raises real scores still under the margin +1, lowers fake scores still above -1, ignores
    # the rest (zero gradient past the margin). G descends -E[D(G(z))]: always raises the fake scores.
    d_real, d_fake = grads_of("hinge", "d")
    inside_real, inside_fake = LOGITS_REAL < 1, LOGITS_FAKE > -1
    torch.testing.assert_close(d_real, torch.where(inside_real, -1.0 / B, 0.0).double())
    torch.testing.assert_close(d_fake, torch.where(inside_fake, 1.0 / B, 0.0).double())
    torch.testing.assert_close(grads_of("hinge", "g"), torch.full((B,), -1.0 / B, dtype=torch.float64))


def test_wgan_is_the_critic_difference_and_reports_the_wasserstein_estimate():
    # mean real 0.5, mean fake -0.8: L_d = -0.8 - 0.5 = -1.3, the estimate E[D(x)] - E[D(G(z))] = 1.3
    loss, stats = make_loss("wgan").d_loss(identity, LOGITS_REAL, LOGITS_FAKE)
    assert loss.item() == pytest.approx(-1.3, abs=1e-12)
    assert stats["wasserstein"].item() == pytest.approx(1.3)
    assert stats["critic_real"].item() == pytest.approx(0.5)
    assert stats["critic_fake"].item() == pytest.approx(-0.8)
    g_loss, _ = make_loss("wgan").g_loss(identity, LOGITS_FAKE)
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
    loss, stats = make_loss("lsgan").d_loss(identity, LOGITS_REAL, LOGITS_FAKE)
    assert loss.item() == pytest.approx(8.675, abs=1e-12)
    assert stats["score_real"].item() == pytest.approx(0.5)
    assert stats["score_fake"].item() == pytest.approx(-0.8)
    # (fake - 1)^2 = [12.25, .25, 0, 49, 4] -> 13.1;  L_g = 13.1 / 2
    g_loss, _ = make_loss("lsgan").g_loss(identity, LOGITS_FAKE)
    assert g_loss.item() == pytest.approx(6.55, abs=1e-12)
    # its gradient pulls each score linearly to its target (unlike a sigmoid loss, no saturation far away)
    torch.testing.assert_close(grads_of("lsgan", "g"), (LOGITS_FAKE - 1) / B)


# --- the registry -------------------------------------------------------------------------------------------

def test_every_loss_returns_exactly_its_declared_stats_detached_and_0_dim():
    assert list(LOSSES) == ["ns", "minimax", "hinge", "wgan", "lsgan"]
    real, fake = LOGITS_REAL.clone().requires_grad_(True), LOGITS_FAKE.clone().requires_grad_(True)
    for name, cls in LOSSES.items():
        loss_fn = make_loss(name)
        assert isinstance(loss_fn, cls)
        _, d_stats = loss_fn.d_loss(identity, real, fake)
        _, g_stats = loss_fn.g_loss(identity, fake)
        assert tuple(d_stats) == cls.D_STATS and tuple(g_stats) == cls.G_STATS, name
        assert set(cls.D_STATS).isdisjoint(cls.G_STATS) and not {"loss_d", "loss_g"} & set(cls.stat_keys())
        for v in (*d_stats.values(), *g_stats.values()):
            assert v.dim() == 0 and not v.requires_grad and v.dtype == torch.float32


def test_only_the_wgan_critic_is_unbounded_and_needs_a_constraint():
    flags = {name: (cls.UNBOUNDED_OUTPUT, cls.NEEDS_CONSTRAINT) for name, cls in LOSSES.items()}
    assert flags == {"ns": (False, False), "minimax": (False, False), "hinge": (False, False),
                     "wgan": (True, True), "lsgan": (False, False)}


def test_unknown_loss_is_a_config_error_listing_the_registry():
    with pytest.raises(ConfigError, match="loss 'wgan-gp' .*allowed: ns, minimax, hinge, wgan, lsgan"):
        make_loss("wgan-gp")


# --- D regularisers -----------------------------------------------------------------------------------------

class LinearD(nn.Module):
    """D(x) = <w, x> + b per image: grad_x D(x) = w for every x, so ||grad|| = ||w||."""

    def __init__(self, w: torch.Tensor):  # w: [C, H, W]
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(torch.tensor(0.3, dtype=w.dtype))

    def forward(self, x):  # [B, C, H, W] -> [B]
        return (x * self.w).flatten(1).sum(1) + self.b


def small_nonlinear_d() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 1),
                         nn.Flatten(0)).double()  # [B, 2, 4, 4] -> [B]


def per_image_input_gradients(D: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """dD(x_i)/dx_i of each image, by torch.autograd.functional.jacobian one image at a time: [B, C, H, W]."""
    return torch.stack([torch.autograd.functional.jacobian(lambda xi: D(xi[None])[0], xi) for xi in x])


W = torch.tensor([[[0.5, -1.0], [2.0, 0.25]]], dtype=torch.float64)  # [1, 2, 2], ||w||^2 = 5.3125
X_REAL = torch.randn(3, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
X_FAKE = torch.randn(3, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))


def test_r1_is_gamma_half_the_squared_gradient_norm_and_trains_d():
    D = LinearD(W)
    penalty, stats = make_regularizer("r1", weight=10.0, every=1).penalty(D, X_REAL, X_FAKE, None)
    assert penalty.item() == pytest.approx(5.0 * 5.3125, rel=1e-12)  # gamma/2 * ||w||^2
    assert stats["r1_grad_norm"].item() == pytest.approx(5.3125**0.5, rel=1e-6)
    # create_graph: the penalty is differentiable in D's weights, d/dw gamma/2 ||w||^2 = gamma * w
    (grad_w,) = torch.autograd.grad(penalty, D.w)
    torch.testing.assert_close(grad_w, 10.0 * W)


def test_r1_matches_the_jacobian_of_a_nonlinear_d():
    D = small_nonlinear_d()
    x = torch.randn(4, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    jac = per_image_input_gradients(D, x)  # [4, 2, 4, 4]
    expected = 0.5 * 2.0 * jac.square().flatten(1).sum(1).mean()
    penalty, _ = make_regularizer("r1", weight=2.0, every=1).penalty(D, x, x.flip(0), None)
    torch.testing.assert_close(penalty, expected, rtol=1e-10, atol=1e-12)


def test_lazy_r1_multiplies_the_loss_by_its_interval_but_not_the_stats():
    D = LinearD(W)
    every_step, stats1 = make_regularizer("r1", weight=10.0, every=1).penalty(D, X_REAL, X_FAKE, None)
    lazy, stats16 = make_regularizer("r1", weight=10.0, every=16).penalty(D, X_REAL, X_FAKE, None)
    torch.testing.assert_close(lazy, 16 * every_step)
    assert stats16["r1_penalty"].item() == stats1["r1_penalty"].item() == pytest.approx(5.0 * 5.3125)


def test_gp_is_lambda_times_the_squared_distance_of_the_norm_from_1():
    # linear D: the gradient is w at every interpolate, so GP = lambda (||w|| - 1)^2 whatever eps is
    D = LinearD(W)
    gen = torch.Generator().manual_seed(0)
    penalty, stats = make_regularizer("gp", weight=10.0, every=1).penalty(D, X_REAL, X_FAKE, gen)
    norm = 5.3125**0.5
    assert penalty.item() == pytest.approx(10.0 * (norm - 1) ** 2, rel=1e-12)
    assert stats["gp_grad_norm"].item() == pytest.approx(norm, rel=1e-6)
    # d/dw lambda (||w|| - 1)^2 = 2 lambda (||w|| - 1) w / ||w||
    (grad_w,) = torch.autograd.grad(penalty, D.w)
    torch.testing.assert_close(grad_w, 2 * 10.0 * (norm - 1) * W / norm)


def test_gp_interpolates_with_eps_from_the_given_generator():
    D = small_nonlinear_d()
    x_real = torch.randn(4, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    x_fake = torch.randn(4, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    gp = make_regularizer("gp", weight=10.0, every=1)
    penalty, _ = gp.penalty(D, x_real, x_fake, torch.Generator().manual_seed(7))
    # by hand: the same draw, eps ~ U[0, 1] per image [4, 1, 1, 1], and jacobians at the interpolates
    eps = torch.rand(4, 1, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    jac = per_image_input_gradients(D, eps * x_real + (1 - eps) * x_fake)
    expected = 10.0 * (jac.flatten(1).norm(dim=1) - 1).square().mean()
    torch.testing.assert_close(penalty, expected, rtol=1e-10, atol=1e-12)
    other, _ = gp.penalty(D, x_real, x_fake, torch.Generator().manual_seed(8))
    assert other.item() != penalty.item()  # another generator state, other interpolates


def test_no_regulariser_adds_an_exact_zero():
    reg = make_regularizer("none", weight=1.0, every=1)
    penalty, stats = reg.penalty(LinearD(W), X_REAL, X_FAKE, None)
    assert penalty.item() == 0.0 and stats == {} and reg.every == 1
    loss = LOGITS_REAL.float().square().mean()
    assert torch.equal(loss + penalty, loss)


@pytest.mark.parametrize("name, kwargs, word", [
    ("r1", {"weight": 0.0, "every": 1}, "gamma must be > 0"),
    ("r1", {"weight": -1.0, "every": 1}, "gamma must be > 0"),
    ("r1", {"weight": 10.0, "every": 0}, "'every' must be an integer >= 1"),
    ("gp", {"weight": 0.0, "every": 1}, "lambda must be > 0"),
    ("gp", {"weight": 10.0, "every": 1.5}, "'every' must be an integer >= 1"),
])
def test_bad_regulariser_settings_are_config_errors(name, kwargs, word):
    with pytest.raises(ConfigError, match=word):
        make_regularizer(name, **kwargs)


def test_unknown_regulariser_is_a_config_error_listing_the_registry():
    assert list(REGULARIZERS) == ["none", "r1", "gp"]
    with pytest.raises(ConfigError, match="unknown regulariser 'r2' .*allowed: none, r1, gp"):
        make_regularizer("r2", weight=1.0, every=1)
