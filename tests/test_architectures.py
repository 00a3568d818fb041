"""The architecture registry (ganforge.nets), spectral normalisation and the generator file.

Tiny widths (8 channels) throughout: these check shapes, the maths of spectral norm and what a file rebuilds,
not image quality.
"""

import pytest
import torch
from torch import nn

from ganforge.errors import ConfigError
from ganforge.io import atomic_torch_save, load_torch
from ganforge.nets import (
    ARCHITECTURES,
    GENERATOR_FORMAT,
    Discriminator,
    Generator,
    build_networks,
    get_architecture,
    init_dcgan_weights,
    load_generator,
    save_generator,
)
from ganforge.nets.spectral import SN_LAYERS

TINY = dict(z_dim=8, g_channels=8, d_channels=8)


def build(arch: str, resolution: int, channels: int = 1, g_sn: bool = False, d_sn: bool = False,
          seed: int = 0):
    torch.manual_seed(seed)
    return build_networks(arch, **TINY, channels=channels, resolution=resolution, g_spectral_norm=g_sn,
                          d_spectral_norm=d_sn)


def sigma_max(layer: nn.Module) -> float:
    """Largest singular value of the layer's (normalised) weight as a matrix [out, in * kh * kw] (Miyato et
    al.); a ConvTranspose2d stores [in, out, kh, kw], so its output dim is moved first."""
    w = layer.weight.detach()
    if isinstance(layer, nn.ConvTranspose2d):
        w = w.transpose(0, 1)
    return torch.linalg.svdvals(w.reshape(w.shape[0], -1))[0].item()


def sn_layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, SN_LAYERS)]


@pytest.mark.parametrize("arch, resolution, channels", [
    ("resnet", 28, 1), ("resnet", 32, 3), ("dcgan", 28, 1), ("dcgan", 32, 3), ("dcgan", 64, 3),
])
def test_output_shapes(arch, resolution, channels):
    G, D = build(arch, resolution, channels)
    x = G(torch.randn(5, 8))
    assert x.shape == (5, channels, resolution, resolution) and x.abs().max() <= 1  # tanh: [-1, 1]
    assert D(x).shape == (5,)


def test_resnet_follows_the_sngan_layout():
    G, D = build("resnet", 32, channels=3)
    assert len(G.blocks) == 3 and G.base == 4  # 4 -> 8 -> 16 -> 32
    G28, _ = build("resnet", 28)
    assert len(G28.blocks) == 2 and G28.base == 7  # 7 -> 14 -> 28
    h = D.blocks(torch.randn(2, 3, 32, 32))
    assert h.shape == (2, 8, 8, 8)  # two down-samplings, then global sum pooling and a linear layer
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())


@pytest.mark.parametrize("arch, resolution", [("dcgan", 28), ("resnet", 32)])
def test_d_scores_each_image_on_its_own(arch, resolution):
    # R1 and GP take per-image gradients from one backward of D(x).sum(): D must not mix the batch
    _, D = build(arch, resolution, d_sn=True)
    x = torch.randn(4, 1, resolution, resolution)
    D.eval()
    torch.testing.assert_close(D(x), torch.cat([D(x[i:i + 1]) for i in range(4)]))


def test_unsupported_resolution_lists_the_supported_ones():
    with pytest.raises(ConfigError, match=r"'resnet' does not support 64 px .*resolutions: 28, 32\)"):
        build("resnet", 64)
    with pytest.raises(ConfigError, match="supported resolutions: 8, 16, 28, 32, 64, 128"):
        get_architecture("dcgan", 48)
    with pytest.raises(ConfigError, match="unknown architecture 'stylegan' .*allowed: dcgan, resnet, mlp"):
        get_architecture("stylegan")
    assert ARCHITECTURES["resnet"].resolutions == (28, 32)


def test_dcgan_from_the_registry_is_the_dcgan_of_before():
    # the trained networks must not change: same constructors, same order of random draws as before
    G, D = build("dcgan", 28)
    torch.manual_seed(0)
    G_old = Generator(z_dim=8, channels=1, resolution=28, g_channels=8, spectral_norm=False)
    D_old = Discriminator(channels=1, resolution=28, d_channels=8, spectral_norm=False)
    init_dcgan_weights(G_old)
    init_dcgan_weights(D_old)
    for new, old in ((G, G_old), (D, D_old)):
        assert all(torch.equal(a, b) for a, b in zip(new.state_dict().values(), old.state_dict().values(),
                                                     strict=True))


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_the_training_task_starts_from_the_registrys_networks_drawn_from_the_init_stream(arch):
    # ganforge.train.build -> tasks.generation.ImageGeneration: G and D are the registry's, initialised from
    # the seed's "init" stream (the same weights whatever the device or the number of processes)
    import numpy as np

    from conftest import tiny_params
    from ganforge.train import build
    from ganforge.train.engine import stream_seed

    images = np.zeros((64, 1, 28, 28), np.uint8)
    p = tiny_params({"train.arch": arch, "base.seed": 3})
    task = build(p, images, None, 0, data_hash="h", device=torch.device("cpu")).task
    torch.manual_seed(stream_seed(3, "init"))
    G, D = build_networks(arch, z_dim=16, channels=1, resolution=28, g_channels=8, d_channels=8,
                          g_spectral_norm=False, d_spectral_norm=False)
    assert task.nets == {"G": task.G, "D": task.D}
    for new, ref in ((task.G, G), (task.D, D)):
        assert type(new) is type(ref) and new.config() == ref.config()
        a, b = new.state_dict(), ref.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_config_rebuilds_the_same_network(arch):
    G, D = build(arch, 28, g_sn=True, d_sn=True)
    for net in (G, D):
        twin = type(net)(**net.config())
        assert twin.state_dict().keys() == net.state_dict().keys()
        assert net.config()["spectral_norm"] is True


@pytest.mark.parametrize("arch, resolution", [("dcgan", 28), ("resnet", 32)])
def test_spectral_norm_makes_every_layer_1_lipschitz(arch, resolution):
    G, D = build(arch, resolution, g_sn=True, d_sn=True)
    for net in (G, D):
        layers = sn_layers(net)
        assert layers and all(hasattr(m, "parametrizations") for m in layers)
        net.eval()  # eval: weight = W / (u^T W v) with the stored u, v, no power iteration
        # at init u, v are the exact singular vectors (reset_spectral_norm): sigma is 1 from the first step
        assert [round(sigma_max(m), 4) for m in layers] == [1.0] * len(layers)
        with torch.no_grad():  # an "optimizer step": u, v are now stale for the new weights
            for m in layers:
                original = m.parametrizations.weight.original
                original.add_(torch.randn_like(original) * original.std() * 2)
        assert max(abs(sigma_max(m) - 1) for m in layers) > 0.05  # stale vectors: a wrong sigma
        net.train()  # one power iteration per forward pass in train mode
        with torch.no_grad():
            for _ in range(60):
                if net is G:
                    net(torch.randn(2, 8))
                else:
                    net(torch.randn(2, 1, resolution, resolution))
        net.eval()
        for m in layers:
            assert sigma_max(m) == pytest.approx(1.0, abs=0.05), m


def test_spectral_norm_state_round_trips_with_its_power_iteration_vectors():
    _, D = build("resnet", 32, d_sn=True, seed=0)
    D.train()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        D(x)  # advances u, v away from their initial values
    state = {k: v.clone() for k, v in D.state_dict().items()}
    assert any(k.endswith("_u") for k in state) and any(k.endswith("_v") for k in state)
    _, twin = build("resnet", 32, d_sn=True, seed=1)  # other weights, other vectors
    twin.load_state_dict(state)
    twin.train()
    with torch.no_grad():
        for _ in range(3):  # resumed training: the same power iterations, the same outputs, bit for bit
            assert torch.equal(D(x), twin(x))


@pytest.mark.parametrize("arch, resolution, g_sn", [
    ("dcgan", 28, False), ("dcgan", 32, True), ("resnet", 28, False), ("resnet", 32, True),
])
def test_generator_file_rebuilds_any_architecture(tmp_path, arch, resolution, g_sn):
    G, _ = build(arch, resolution, channels=3, g_sn=g_sn)
    with torch.no_grad():
        G.train()(torch.randn(16, 8))  # non-trivial BatchNorm statistics (and power iterations under SN)
    G.eval()
    path = save_generator(tmp_path / "generator.pt", G, meta={"dataset": "test"})
    blob = load_torch(path)
    assert blob["architecture"] == arch and blob["config"]["spectral_norm"] is g_sn
    loaded, meta = load_generator(path)
    z = torch.randn(4, 8)
    assert type(loaded) is type(G) and meta == {"dataset": "test"} and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(z), G(z))


def test_a_generator_file_from_before_the_registry_loads_as_dcgan(tmp_path):
    # the layout today's (pre-registry) code writes: no architecture name, no spectral_norm in the config
    G, _ = build("dcgan", 28)
    G.eval()
    old_config = {"z_dim": 8, "channels": 1, "resolution": 28, "g_channels": 8}
    atomic_torch_save(tmp_path / "old.pt", {"format": GENERATOR_FORMAT, "config": old_config,
                                           "state_dict": G.state_dict(), "meta": {"step": 3}})
    loaded, meta = load_generator(tmp_path / "old.pt")
    z = torch.randn(4, 8)
    assert type(loaded) is Generator and not loaded.spectral_norm and meta == {"step": 3}
    with torch.no_grad():
        assert torch.equal(loaded(z), G(z))
