"""What every registered loss and D regulariser promises the GAN object (losses/base.py), checked entry by
entry over the registries as they are: a new formulation is tested by being registered, and no test here
lists the registries' names.

    loss         D_STATS / G_STATS: disjoint tuples of str; Settings: a pydantic model (unknown keys refused);
                 d_loss / g_loss on D's raw outputs [B]: a finite 0-dim loss with a gradient, and exactly
                 the declared stats, in order, as detached 0-dim fp32 tensors
    regulariser  STATS; penalty(D, x_real, c_real, x_fake, c_fake, generator): a finite 0-dim loss >= 0 that
                 trains D (when not zero), exactly the declared stats, and the loss times `every` (the stats
                 not)
Every stats key of one step lands in one dict beside loss_d / loss_g: no two entries may share a key.
"""

import pytest
import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from ganforge.losses import LOSSES, REGULARIZERS, PenaltySettings, make_loss, make_regularizers
from ganforge.losses.base import Loss, NoSettings, Regularizer
from ganforge.losses.label import LabelMatching

# Settings values for an entry whose Settings has required keys (none today): the contract test builds
# each loss from these; an entry with required settings and no example here fails, naming its keys.
SETTINGS_EXAMPLES: dict[str, dict] = {}
STEP_KEYS = ("loss_d", "loss_g")


def build_loss(name: str) -> Loss:
    cls = LOSSES[name]
    if name in SETTINGS_EXAMPLES:
        return make_loss(name, cls.Settings(**SETTINGS_EXAMPLES[name]))
    required = [k for k, f in cls.Settings.model_fields.items() if f.is_required()]
    assert not required, f"{name}: add an example of its settings {required} to SETTINGS_EXAMPLES"
    return make_loss(name)


def outputs(seed: int, dtype=torch.float32, b: int = 16, scale: float = 3.0):
    """D's raw outputs on a real and a fake batch, [b] each, leaves with requires_grad."""
    gen = torch.Generator().manual_seed(seed)
    real, fake = scale * torch.randn(b, generator=gen), scale * torch.randn(b, generator=gen)
    return real.to(dtype).requires_grad_(True), fake.to(dtype).requires_grad_(True)


def check_stats(stats: dict, keys: tuple[str, ...], where: str) -> None:
    assert tuple(stats) == keys, f"{where}: stats keys {tuple(stats)} != declared {keys}"
    for k, v in stats.items():
        assert isinstance(v, torch.Tensor) and v.dim() == 0, f"{where}: {k} is not a 0-dim tensor"
        assert not v.requires_grad and v.grad_fn is None, f"{where}: {k} is not detached"
        assert v.dtype == torch.float32, f"{where}: {k} is {v.dtype}, not fp32"
        assert torch.isfinite(v), f"{where}: {k} = {v}"


def check_loss_value(loss: torch.Tensor, where: str) -> None:
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0, f"{where}: not a 0-dim tensor"
    assert torch.isfinite(loss), f"{where}: {loss}"
    assert loss.requires_grad, f"{where}: no gradient"


# --- losses ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_declares_its_stats_flags_and_settings(name):
    cls = LOSSES[name]
    assert issubclass(cls, Loss)
    for keys in (cls.D_STATS, cls.G_STATS):
        assert isinstance(keys, tuple) and all(isinstance(k, str) and k for k in keys)
        assert len(set(keys)) == len(keys)
    assert set(cls.D_STATS).isdisjoint(cls.G_STATS)
    assert cls.stat_keys() == cls.D_STATS + cls.G_STATS
    assert not set(STEP_KEYS) & set(cls.stat_keys())
    for flag in ("UNBOUNDED_OUTPUT", "NEEDS_CONSTRAINT", "G_NEEDS_REAL"):
        assert isinstance(getattr(cls, flag), bool), f"{name}.{flag}"
    # its settings: a pydantic model that refuses unknown keys (what config.Choice validates params by)
    assert isinstance(cls.Settings, type) and issubclass(cls.Settings, BaseModel)
    assert cls.Settings.model_config.get("extra") == "forbid"
    with pytest.raises(ValidationError, match="bogus"):
        cls.Settings(**SETTINGS_EXAMPLES.get(name, {}), bogus=1)
    loss_fn = build_loss(name)
    assert isinstance(loss_fn, cls) and isinstance(loss_fn.settings, cls.Settings)
    # built directly from the registry with None: its empty settings
    if cls.Settings is NoSettings:
        assert isinstance(cls(None).settings, NoSettings)


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_every_loss_is_a_finite_differentiable_scalar_with_its_declared_stats(name, dtype):
    loss_fn = build_loss(name)
    for seed in range(3):
        real, fake = outputs(seed, dtype)
        loss_d, d_stats = loss_fn.d_loss(real, fake)
        check_loss_value(loss_d, f"{name}.d_loss")
        check_stats(d_stats, loss_fn.D_STATS, f"{name}.d_loss")
        g_real, g_fake = torch.autograd.grad(loss_d, (real, fake))
        assert torch.isfinite(g_real).all() and torch.isfinite(g_fake).all()
        assert g_real.any() and g_fake.any(), f"{name}.d_loss: no gradient reaches the outputs"

        # the G phase: the real outputs are constants (data through a frozen D), given only when asked for
        out_real = real.detach() if loss_fn.G_NEEDS_REAL else None
        loss_g, g_stats = loss_fn.g_loss(fake, out_real)
        check_loss_value(loss_g, f"{name}.g_loss")
        check_stats(g_stats, loss_fn.G_STATS, f"{name}.g_loss")
        (grad_fake,) = torch.autograd.grad(loss_g, fake)
        assert torch.isfinite(grad_fake).all() and grad_fake.any(), f"{name}.g_loss: no gradient to G"


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_is_pure_maths_on_the_outputs(name):
    # the same outputs give the same loss, bit for bit, and the inputs are left as they were
    loss_fn = build_loss(name)
    real, fake = outputs(7)
    before = (real.detach().clone(), fake.detach().clone())
    a, _ = loss_fn.d_loss(real, fake)
    b, _ = build_loss(name).d_loss(real, fake)
    assert torch.equal(a, b)
    g_real = real.detach() if loss_fn.G_NEEDS_REAL else None
    assert torch.equal(loss_fn.g_loss(fake, g_real)[0], loss_fn.g_loss(fake, g_real)[0])
    assert torch.equal(real.detach(), before[0]) and torch.equal(fake.detach(), before[1])


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_trains_d_to_separate_and_g_to_fool(name):
    # from an undecided D (outputs near 0), a small descent step on L_d widens the gap mean D(real) -
    # mean D(fake) (D learns to tell them apart); one on L_g raises D's outputs on the fakes (G learns to
    # fool it)
    loss_fn = build_loss(name)
    real, fake = outputs(3, torch.float64, scale=0.1)
    loss_d, _ = loss_fn.d_loss(real, fake)
    g_real, g_fake = torch.autograd.grad(loss_d, (real, fake))
    assert (real - 1e-3 * g_real).mean() - (fake - 1e-3 * g_fake).mean() > (real - fake).mean()
    loss_g, _ = loss_fn.g_loss(fake, real.detach() if loss_fn.G_NEEDS_REAL else None)
    (grad_fake,) = torch.autograd.grad(loss_g, fake)
    assert (fake - 1e-3 * grad_fake).mean() > fake.mean()


# --- regularisers ---------------------------------------------------------------------------------------

class TinyD(nn.Module):
    """A tiny conv D(x, c) -> [B] on [B, 2, 4, 4]; with classes, a projection head that reads c."""

    def __init__(self, num_classes: int = 0):
        super().__init__()
        torch.manual_seed(1)
        self.features = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Flatten(),
                                      nn.Linear(4 * 4 * 4, 8), nn.LeakyReLU(0.2))
        self.head = nn.Linear(8, 1)
        self.embed = nn.Embedding(num_classes, 8) if num_classes else None

    def forward(self, x, c=None):
        h = self.features(x)
        out = self.head(h)[:, 0]
        return out if c is None else out + (self.embed(c) * h).sum(1)


def batches(conditional: bool):
    gen = torch.Generator().manual_seed(5)
    x_real, x_fake = torch.randn(6, 2, 4, 4, generator=gen), torch.randn(6, 2, 4, 4, generator=gen)
    if not conditional:
        return x_real, None, x_fake, None
    return x_real, torch.randint(3, (6,), generator=gen), x_fake, torch.randint(3, (6,), generator=gen)


@pytest.mark.parametrize("name", list(REGULARIZERS))
def test_every_regulariser_declares_stats_no_other_entry_uses(name):
    cls = REGULARIZERS[name]
    assert issubclass(cls, Regularizer)
    assert isinstance(cls.STATS, tuple) and all(isinstance(k, str) and k for k in cls.STATS)
    assert len(set(cls.STATS)) == len(cls.STATS)
    others = {k for other, c in REGULARIZERS.items() if other != name for k in c.STATS}
    losses = {k for c in LOSSES.values() for k in c.stat_keys()}
    shared = set(cls.STATS) & (others | losses | set(LabelMatching.STATS) | set(STEP_KEYS))
    assert not shared, f"{name}: stats keys {sorted(shared)} are another entry's"


@pytest.mark.parametrize("name", list(REGULARIZERS))
@pytest.mark.parametrize("conditional", [False, True], ids=["unconditional", "conditional"])
def test_every_regulariser_returns_a_finite_penalty_that_trains_d(name, conditional):
    D = TinyD(num_classes=3 if conditional else 0)
    reg = REGULARIZERS[name](PenaltySettings(weight=2.0, every=1))
    assert isinstance(reg.every, int) and reg.every >= 1
    x_real, c_real, x_fake, c_fake = batches(conditional)
    penalty, stats = reg.penalty(D, x_real, c_real, x_fake, c_fake, torch.Generator().manual_seed(0))
    assert isinstance(penalty, torch.Tensor) and penalty.dim() == 0 and torch.isfinite(penalty)
    assert penalty.dtype == torch.float32 and penalty.item() >= 0
    check_stats(stats, reg.STATS, name)
    assert not x_real.requires_grad and not x_fake.requires_grad  # the caller's batches are left alone
    if penalty.requires_grad:  # a zero penalty (none) has nothing to train
        grads = torch.autograd.grad(penalty, list(D.parameters()), allow_unused=True)
        assert all(g is None or torch.isfinite(g).all() for g in grads)
        assert any(g is not None and g.any() for g in grads), f"{name}: the penalty does not reach D"
    else:
        assert penalty.item() == 0.0


@pytest.mark.parametrize("name", list(REGULARIZERS))
def test_every_regulariser_multiplies_its_loss_by_every_but_not_its_stats(name):
    D = TinyD()
    x_real, c_real, x_fake, c_fake = batches(False)

    def apply(every):
        reg = REGULARIZERS[name](PenaltySettings(weight=2.0, every=every))
        return reg, *reg.penalty(D, x_real, c_real, x_fake, c_fake, torch.Generator().manual_seed(0))

    _, once, stats1 = apply(1)
    reg4, lazy, stats4 = apply(4)
    torch.testing.assert_close(lazy, reg4.every * once, rtol=1e-6, atol=0)
    assert reg4.every in (1, 4)  # a penalty that is never applied (none) may keep 1
    assert stats4.keys() == stats1.keys()
    for k in stats1:
        torch.testing.assert_close(stats4[k], stats1[k], rtol=0, atol=0)


def test_every_pair_of_penalties_joins_with_plus():
    names = [n for n in REGULARIZERS if REGULARIZERS[n].STATS]  # the real penalties (not none)
    for a in names:
        for b in names:
            if a != b:
                built = make_regularizers(f"{a}+{b}", PenaltySettings(weight=1.0, every=2))
                assert [type(r) for r in built] == [REGULARIZERS[a], REGULARIZERS[b]]
                assert all(r.every == 2 for r in built)
