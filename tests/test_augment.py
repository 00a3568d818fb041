"""DiffAugment (ganforge.augment): differentiable, the official transforms' ranges, explicit generators.

Every transform here is linear in x (brightness: affine) given its random draw, so gradcheck is exact on
float64 inputs, and "the same draw" can be recognised: T(a + b) = T(a) + T(b) under the same generator state.
"""

import pytest
import torch

from ganforge.augment import (
    AUGMENTATIONS,
    DiffAugment,
    brightness,
    contrast,
    cutout,
    parse_policy,
    saturation,
    translation,
)
from ganforge.errors import ConfigError


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def coordinates(b: int, c: int, h: int, w: int) -> torch.Tensor:
    """[B, C, H, W] with a distinct positive value per pixel: value -> (row, column) is recoverable."""
    return (torch.arange(h * w, dtype=torch.float64).reshape(1, 1, h, w) + 1).expand(b, c, h, w).clone()


def test_policy_words_come_from_the_registry_and_a_bad_one_is_named():
    assert parse_policy("") == () and parse_policy("  ") == ()
    assert parse_policy("color, translation,cutout") == ("color", "translation", "cutout")
    assert parse_policy("color+translation+cutout") == ("color", "translation", "cutout")  # -S friendly
    with pytest.raises(ConfigError, match=r"augmentation 'flip' .*allowed: color, translation, cutout"):
        parse_policy("color,flip")
    with pytest.raises(ConfigError, match="unknown augmentation ''"):
        DiffAugment("color,,cutout")
    assert tuple(AUGMENTATIONS) == ("color", "translation", "cutout")


def test_empty_policy_is_the_identity_and_draws_nothing():
    aug, g = DiffAugment(""), gen(0)
    x = torch.randn(4, 3, 8, 8)
    state = g.get_state()
    assert aug.identity and aug(x, g) is x
    assert torch.equal(g.get_state(), state)


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_every_policy_is_differentiable(policy):
    # gradcheck evaluates the function many times: each call gets a freshly seeded generator (the same draw)
    aug = DiffAugment(policy)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: aug(t, gen(3)), (x,))


def test_translation_shifts_each_image_by_at_most_an_eighth_and_pads_with_zeros():
    b, h, w = 256, 32, 32
    x = coordinates(b, 2, h, w)
    y = translation(x, gen(0))  # [B, 2, 32, 32]
    assert torch.equal(y[:, 0], y[:, 1])  # one shift for all channels
    shifts = set()
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for i in range(b):
        kept = y[i, 0] > 0  # pixels that came from the image; the rest is the zero padding
        src = y[i, 0][kept].long() - 1
        dy, dx = src // w - rows[kept], src % w - cols[kept]  # where each output pixel came from
        assert (dy == dy[0]).all() and (dx == dx[0]).all()  # a rigid shift
        dy, dx = int(dy[0]), int(dx[0])
        assert int(kept.sum()) == (h - abs(dy)) * (w - abs(dx))  # everything shifted in is zero
        shifts.add((dy, dx))
    assert {s for pair in shifts for s in pair} == set(range(-4, 5))  # round(32 / 8) = 4, every value drawn


def test_cutout_zeroes_one_half_size_square_in_every_channel_and_nothing_else():
    b, h, w = 128, 32, 32
    x = coordinates(b, 3, h, w)
    y = cutout(x, gen(0))
    zero = y == 0  # [B, 3, 32, 32]
    assert torch.equal(zero[:, 0], zero[:, 2]) and torch.equal(y[~zero], x[~zero])
    full_squares = 0
    for i in range(b):
        r, c = zero[i, 0].nonzero(as_tuple=True)
        height, width = int(r.max() - r.min() + 1), int(c.max() - c.min() + 1)
        assert int(zero[i, 0].sum()) == height * width and height <= 16 and width <= 16  # a (clipped) square
        full_squares += height == width == 16
    assert full_squares > 0  # unclipped squares are 16 x 16: half of 32


def test_color_transforms_have_the_official_ranges():
    x = torch.zeros(4000, 1, 2, 2)
    shift = brightness(x, gen(0))[:, 0, 0, 0]  # zeros in, the per-image shift out
    assert -0.5 <= shift.min() and shift.max() < 0.5 and abs(shift.mean()) < 0.02
    assert abs(shift.std() - 12**-0.5) < 0.01  # U[-0.5, 0.5): std 1 / sqrt(12)
    # contrast scales the deviation from the image mean by U[0.5, 1.5): the mean stays, the spread changes
    img = torch.randn(500, 3, 4, 4, generator=gen(1))
    out = contrast(img, gen(2))
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), img.mean(dim=(1, 2, 3)))
    ratio = (out - out.mean(dim=(1, 2, 3), keepdim=True)).flatten(1).norm(dim=1) / \
        (img - img.mean(dim=(1, 2, 3), keepdim=True)).flatten(1).norm(dim=1)
    assert 0.5 <= ratio.min() and ratio.max() < 1.5
    # saturation scales the deviation from the per-pixel channel mean by U[0, 2)
    out = saturation(img, gen(3))
    torch.testing.assert_close(out.mean(dim=1), img.mean(dim=1))
    ratio = (out - out.mean(dim=1, keepdim=True)).flatten(1).norm(dim=1) / \
        (img - img.mean(dim=1, keepdim=True)).flatten(1).norm(dim=1)
    assert 0 <= ratio.min() and ratio.max() < 2


def test_saturation_is_the_identity_on_one_channel_images():
    x = torch.randn(8, 1, 28, 28, generator=gen(0))
    assert torch.equal(saturation(x, gen(1)), x)
    out = DiffAugment("color,translation,cutout")(x, gen(2))  # and the full policy works on 1 channel
    assert out.shape == x.shape


def test_the_same_generator_state_gives_the_same_transform():
    # given the draw, every transform is affine in x: T(a + b) = T(a) + T(b) - T(0) iff the same draw was used
    aug = DiffAugment("color,translation,cutout")
    a = torch.randn(16, 3, 32, 32, dtype=torch.float64, generator=gen(0))
    b = torch.randn(16, 3, 32, 32, dtype=torch.float64, generator=gen(1))
    zero = torch.zeros_like(a)
    torch.testing.assert_close(aug(a + b, gen(5)), aug(a, gen(5)) + aug(b, gen(5)) - aug(zero, gen(5)))
    assert not torch.allclose(aug(a + b, gen(5)), aug(a, gen(5)) + aug(b, gen(6)) - aug(zero, gen(5)))


def test_real_and_fake_batches_get_the_same_distribution_of_transforms():
    # the loop augments reals, then fakes, from one generator stream: their brightness shifts are draws from
    # the same U[-0.5, 0.5) (quantiles agree), not the same draws
    g = gen(0)
    real_shifts, fake_shifts = [], []
    for _ in range(50):
        real_shifts.append(brightness(torch.zeros(64, 1, 1, 1), g).flatten())
        fake_shifts.append(brightness(torch.zeros(64, 1, 1, 1), g).flatten())
    real, fake = torch.cat(real_shifts), torch.cat(fake_shifts)  # [3200] each
    q = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9])
    torch.testing.assert_close(real.quantile(q), fake.quantile(q), atol=0.03, rtol=0)
    torch.testing.assert_close(real.quantile(q), q - 0.5, atol=0.03, rtol=0)
    assert not torch.equal(real, fake)


def test_a_resumed_generator_augments_bit_for_bit_alike():
    aug = DiffAugment("color,translation,cutout")
    x = torch.randn(8, 3, 32, 32, generator=gen(0))
    g = gen(9)
    aug(x, g)
    state = g.get_state()  # what a checkpoint stores (train/checkpoint.rng_states)
    after = aug(x, g)
    resumed = torch.Generator()
    resumed.set_state(state)
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(aug(x, resumed), after)
