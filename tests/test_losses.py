"""The loss object against the formulas of the original GAN paper, on hand-built logits.

D is the identity here, so the "images" are the logits themselves and D(x) = sigmoid(logit).
"""

import pytest
import torch

from ganforge.errors import ConfigError
from ganforge.losses import GANLoss

LOGITS_REAL = torch.tensor([2.0, -1.0, 0.0, 4.5, -3.0], dtype=torch.float64)
LOGITS_FAKE = torch.tensor([-2.5, 0.5, 1.0, -6.0, 3.0], dtype=torch.float64)


def identity(x):
    return x


def test_d_loss_is_the_papers_formula_for_both_kinds():
    p_real, p_fake = torch.sigmoid(LOGITS_REAL), torch.sigmoid(LOGITS_FAKE)
    expected = -(torch.log(p_real) + torch.log(1 - p_fake)).mean()  # -(1/k) sum[log D(x) + log(1 - D(G(z)))]
    for kind in ("ns", "minimax"):
        loss, stats = GANLoss(kind).d_loss(identity, LOGITS_REAL, LOGITS_FAKE)
        torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(stats["d_real"], p_real.mean())
        torch.testing.assert_close(stats["d_fake"], p_fake.mean())


def test_g_losses_are_their_formulas():
    p_fake = torch.sigmoid(LOGITS_FAKE)
    torch.testing.assert_close(GANLoss("minimax").g_loss(identity, LOGITS_FAKE), torch.log(1 - p_fake).mean())
    torch.testing.assert_close(GANLoss("ns").g_loss(identity, LOGITS_FAKE), -torch.log(p_fake).mean())


def test_losses_stay_finite_where_the_naive_formula_overflows():
    # sigmoid(40) == 1.0 in float32, so log(1 - D) is -inf; the logit form gives the exact value 40
    logits = torch.tensor([40.0, -40.0])
    assert torch.isinf(torch.log(1 - torch.sigmoid(logits))).any()
    loss, _ = GANLoss("ns").d_loss(identity, -logits, logits)  # real scored -40/40, fake 40/-40
    assert torch.isfinite(loss) and loss.item() == pytest.approx((40 + 40 + 2 * 4.2e-18) / 2, rel=1e-6)


def test_minimax_saturates_where_ns_does_not():
    # D confidently rejects the fakes (logit -8): minimax gives G almost no gradient, ns ~1 per image
    logits = torch.full((4,), -8.0, requires_grad=True)
    grads = {}
    for kind in ("minimax", "ns"):
        (g,) = torch.autograd.grad(GANLoss(kind).g_loss(identity, logits), logits)
        grads[kind] = g.abs().sum().item()
    assert grads["minimax"] < 1e-3 < 0.99 < grads["ns"]


def test_unknown_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="allowed: ns, minimax"):
        GANLoss("wgan")
