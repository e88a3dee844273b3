"""Shapes, gradients and reference computations of the StyleGAN2 / CoModGAN blocks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from napari_rcgan.models import CoModCritic, CoModGenerator
from napari_rcgan.models.comodgan import check_resolution, stage_width
from napari_rcgan.models.stylegan import (
    EqualConv2d,
    EqualLinear,
    MappingNetwork,
    ModulatedConv2d,
    NoiseInjection,
    StyledLayer,
    fir_filter,
    fir_kernel,
    minibatch_stddev,
    upsample2x,
)

SMALL = {"latent_dim": 16, "mapping_layers": 2, "channel_base": 64, "channel_max": 16}


def _condition(batch: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """``[image · (1 − hole), hole]`` with a centred square hole, as the sampler builds it."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, channels, size, size, generator=generator) * 2 - 1
    hole = torch.zeros(batch, 1, size, size)
    hole[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    return torch.cat([image * (1 - hole), hole], dim=1)


def test_upsample_is_zero_insertion_then_filter():
    x = torch.randn(2, 3, 5, 6)
    stuffed = torch.zeros(2, 3, 10, 12)
    stuffed[..., ::2, ::2] = x
    expected = fir_filter(stuffed, fir_kernel() * 4, (2, 1))
    assert torch.allclose(upsample2x(x, fir_kernel()), expected, atol=1e-6)
    constant = upsample2x(torch.ones(1, 1, 8, 8), fir_kernel())
    assert torch.allclose(constant[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12))


def test_modulated_conv_matches_direct_per_example_computation():
    torch.manual_seed(0)
    layer = ModulatedConv2d(4, 5, 3, style_dim=7)
    with torch.no_grad():
        layer.affine.weight.normal_()
    x, style = torch.randn(3, 4, 8, 8), torch.randn(3, 7)
    scales = F.linear(style, layer.affine.weight * layer.affine.weight_gain, layer.affine.bias)
    outputs = []
    for i in range(3):
        weight = layer.weight / math.sqrt(4 * 9) * scales[i][None, :, None, None]
        weight = weight / weight.square().sum(dim=(1, 2, 3), keepdim=True).add(1e-8).sqrt()
        outputs.append(F.conv2d(x[i : i + 1], weight, padding=1))
    assert torch.allclose(layer(x, style), torch.cat(outputs), atol=1e-5)


def test_demodulation_makes_the_output_invariant_to_the_style_scale():
    torch.manual_seed(1)
    layer = ModulatedConv2d(4, 6, 3, style_dim=5)
    x, style = torch.randn(2, 4, 8, 8), torch.randn(2, 5)
    with torch.no_grad():
        layer.affine.bias.zero_()
    assert torch.allclose(layer(x, style), layer(x, 3 * style), atol=1e-5)
    plain = ModulatedConv2d(4, 6, 1, style_dim=5, demodulate=False)
    with torch.no_grad():
        plain.affine.bias.zero_()
    assert torch.allclose(plain(x, 3 * style), 3 * plain(x, style), atol=1e-5)


def test_upsampling_modulated_conv_shape_and_gradients():
    layer = ModulatedConv2d(4, 6, 3, style_dim=5, up=True)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    style = torch.randn(2, 5, requires_grad=True)
    out = layer(x, style)
    assert out.shape == (2, 6, 16, 16)
    out.square().sum().backward()
    for tensor in (x, style, layer.weight, layer.affine.weight):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0


def test_noise_injection_adds_scaled_noise_and_learns_its_strength():
    layer = NoiseInjection()
    x, noise = torch.randn(2, 3, 4, 4), torch.randn(2, 1, 4, 4)
    assert torch.equal(layer(x, noise), x)  # strength starts at 0
    with torch.no_grad():
        layer.strength.fill_(0.5)
    assert torch.allclose(layer(x, noise), x + 0.5 * noise)
    layer(x, noise).sum().backward()
    assert torch.allclose(layer.strength.grad, noise.sum() * 3)


def test_styled_layer_uses_noise_once_its_strength_is_nonzero():
    layer = StyledLayer(4, 4, style_dim=3)
    x, style = torch.randn(1, 4, 8, 8), torch.randn(1, 3)
    noise_a, noise_b = torch.randn(1, 1, 8, 8), torch.randn(1, 1, 8, 8)
    assert torch.equal(layer(x, style, noise_a), layer(x, style, noise_b))
    with torch.no_grad():
        layer.noise.strength.fill_(1.0)
    assert not torch.allclose(layer(x, style, noise_a), layer(x, style, noise_b))


def test_equal_conv_downsamples_and_linear_keeps_unit_scale():
    conv = EqualConv2d(3, 5, 3, down=True)
    assert conv(torch.randn(2, 3, 16, 16)).shape == (2, 5, 8, 8)
    shortcut = EqualConv2d(3, 5, 1, bias=False, activation=False, down=True)
    assert shortcut(torch.randn(2, 3, 16, 16)).shape == (2, 5, 8, 8)
    torch.manual_seed(0)
    linear = EqualLinear(512, 512, lr_mul=0.01)
    assert 0.9 < linear(torch.randn(256, 512)).std() < 1.1


def test_mapping_network_normalises_its_input():
    mapping = MappingNetwork(8, num_layers=2)
    z = torch.randn(3, 8)
    assert torch.allclose(mapping(z), mapping(5 * z), atol=1e-5)


def test_minibatch_stddev_matches_direct_computation():
    x = torch.randn(8, 6, 4, 4)
    out = minibatch_stddev(x, group_size=4)
    assert out.shape == (8, 7, 4, 4)
    for member in range(2):  # groups are examples {m, m + 2, m + 4, m + 6}
        group = x[member::2]
        sd = group.var(dim=0, unbiased=False).add(1e-8).sqrt().mean()
        assert torch.allclose(out[member::2, 6], sd.expand(4, 4, 4), atol=1e-6)
    assert torch.equal(out[:, :6], x)
    odd = minibatch_stddev(torch.randn(6, 4, 4, 4), group_size=4)  # 6 = 3 groups of 2
    assert odd.shape == (6, 5, 4, 4)


@pytest.mark.parametrize("size", [32, 64])
def test_generator_shapes_pastes_known_pixels_and_reaches_every_parameter(size):
    torch.manual_seed(0)
    generator = CoModGenerator(channels=3, resolution=size, **SMALL)
    condition = _condition(2, 3, size)
    code = torch.randn(2, generator.code_size)
    assert generator.code_shape(size, size) == (generator.code_size,)
    assert generator.code_size == 16 + 16 + 2 * sum(4**r for r in range(3, int(math.log2(size)) + 1))
    out = generator.sample(condition, code)
    assert out.shape == (2, 3, size, size)
    known = condition[:, 3:] == 0
    assert torch.equal(out.masked_select(known.expand_as(out)),
                       condition[:, :3].masked_select(known.expand_as(out)))
    out.square().sum().backward()
    missing = [name for name, p in generator.named_parameters() if p.grad is None]
    assert not missing
    dead = [name for name, p in generator.named_parameters()
            if p.grad.abs().sum() == 0 and not name.endswith("noise.strength")]
    assert not dead


def test_generator_code_and_condition_both_steer_the_output():
    torch.manual_seed(0)
    generator = CoModGenerator(channels=1, resolution=32, **SMALL).eval()
    condition = _condition(1, 1, 32)
    code = torch.randn(1, generator.code_size)
    out = generator.sample(condition, code)
    assert torch.equal(out, generator.sample(condition, code))  # eval: deterministic given the code
    other_z = code.clone()
    other_z[:, : generator.latent_dim] = torch.randn(1, generator.latent_dim)
    assert not torch.allclose(out, generator.sample(condition, other_z))
    other_image = condition.clone()
    other_image[..., :4, :] = -other_image[..., :4, :]  # change known pixels only
    hole = condition[:, 1:] == 1
    assert not torch.allclose(out[hole], generator.sample(other_image, code)[hole])
    for parameter in generator.parameters():
        if parameter.ndim == 0:
            with torch.no_grad():
                parameter.fill_(1.0)  # noise strengths on: the noise maps matter
    other_noise = code.clone()
    other_noise[:, generator.latent_dim :] = torch.randn(1, generator.code_size - generator.latent_dim)
    assert not torch.allclose(generator.sample(condition, code), generator.sample(condition, other_noise))


def test_co_modulation_style_depends_on_code_and_encoder():
    torch.manual_seed(0)
    generator = CoModGenerator(channels=3, resolution=32, **SMALL).eval()
    condition = _condition(2, 3, 32).requires_grad_(True)
    z = torch.randn(2, generator.latent_dim, requires_grad=True)
    global_code, skips = generator.encode(torch.cat([0.5 - condition[:, 3:], condition[:, :3]], 1))
    assert global_code.shape == (2, 2 * stage_width(1, 64, 16))
    assert [s.shape[-1] for s in skips] == [32, 16, 8, 4]
    style = generator.style(generator.mapping(z), global_code)
    assert style.shape == (2, generator.latent_dim + global_code.shape[1])
    scales = generator.decoder_conv.conv.affine(style)
    scales.sum().backward()
    assert z.grad.abs().sum() > 0 and condition.grad.abs().sum() > 0
    affine = generator.decoder_conv.conv.affine.weight.grad
    assert affine[:, : generator.latent_dim].abs().sum() > 0
    assert affine[:, generator.latent_dim :].abs().sum() > 0


def test_dropout_on_the_global_code_only_in_training():
    torch.manual_seed(0)
    generator = CoModGenerator(channels=3, resolution=32, **SMALL)
    condition, code = _condition(1, 3, 32), torch.randn(1, generator.code_size)
    generator.train()
    assert not torch.allclose(generator.sample(condition, code), generator.sample(condition, code))


@pytest.mark.parametrize("minibatch_sd", [False, True])
def test_critic_shapes_gradients_and_minibatch_dependence(minibatch_sd):
    torch.manual_seed(0)
    critic = CoModCritic(channels=3, resolution=32, channel_base=64, channel_max=16,
                         minibatch_sd=minibatch_sd)
    condition = _condition(4, 3, 32)
    images = torch.randn(4, 3, 32, 32, requires_grad=True)
    scores = critic(images, condition)
    assert scores.shape == (4, 1)
    scores.sum().backward()
    assert images.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in critic.parameters())
    changed = images.detach().clone()
    changed[1:] = torch.randn(3, 3, 32, 32)
    first_changes = not torch.allclose(critic(changed, condition)[0], scores[0].detach())
    assert first_changes == minibatch_sd


@pytest.mark.parametrize("size", [16, 48, 2048, 0])
def test_resolution_must_be_a_power_of_two_in_range(size):
    with pytest.raises(ValueError, match="power of two from 32 to 1024"):
        check_resolution(size)
    with pytest.raises(ValueError, match=f"got {size}"):
        CoModGenerator(resolution=size, **SMALL)
