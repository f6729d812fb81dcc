"""Training losses: LPIPS vs torchmetrics, GAN terms on known logits, LeCAM state, the adaptive weight, KL and
FSQ terms (chunked == one shot, values and gradients), one optimisation step per path on tiny tokenizers, and
(with VIDTOK_ORIGINAL pointing to a microsoft/VidTok checkout) parity with the original implementation."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from standins import make_vgg_home, random_vgg16_file

import vidtok
import vidtok.io.auxiliary_weights
from vidtok.errors import ConfigError, WeightsError
from vidtok.losses import (
    LeCAM,
    LossConfig,
    NLayerDiscriminator,
    NLayerDiscriminator3D,
    VidTokLoss,
    adaptive_generator_weight,
    commitment_loss,
    entropy_loss_weight,
    fsq_entropy_loss,
    hinge_d_loss,
    hinge_g_loss,
    kl_loss,
    load_discriminator_state_dict,
    non_saturating_g_loss,
    original_steps,
    vanilla_d_loss,
)
from vidtok.losses import regularization as reg_module
from vidtok.metrics.lpips import LPIPS, heads_path
from vidtok.models.regularizers import FSQ
from vidtok.modules.conv import unwrap_conv

from conftest import needs_original, original_module

KL_NAME = "vidtok_kl_causal_488_4chn"
FSQ_NAME = "vidtok_fsq_causal_488_4096"


pytestmark = pytest.mark.usefixtures("one_thread")


def video(frames: int = 5, size: int = 32, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand((batch, 3, frames, size, size), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def tiny(name: str, seed: int = 0) -> vidtok.Tokenizer:
    torch.manual_seed(seed)
    return vidtok.load_tokenizer(name, overrides=["model.ch=8"], pretrained=False).train().requires_grad_(True)


def last_layer(tok: vidtok.Tokenizer) -> torch.Tensor:
    return unwrap_conv(tok.decoder.conv_out).weight


@pytest.fixture
def vgg_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$TORCH_HOME with a random VGG16 in the hub cache (torchvision does not hash-check cached files)."""
    home = make_vgg_home(tmp_path / "torch_home")
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("VIDTOK_VGG16", raising=False)
    return home


# ---- LPIPS ------------------------------------------------------------------------------------------------
def test_lpips_matches_torchmetrics(vgg_home: Path) -> None:
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    ours = LPIPS(pretrained=True)  # found in $TORCH_HOME's hub cache
    reference = LearnedPerceptualImagePatchSimilarity(net_type="vgg", reduction="sum")
    gen = torch.Generator().manual_seed(1)
    x = torch.rand((2, 3, 32, 32), generator=gen) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
    got = ours(x, y)
    assert got.shape == (2, 1, 1, 1)
    for i in range(2):
        want = reference(x[i : i + 1], y[i : i + 1])
        assert torch.allclose(got[i].reshape(()), want, rtol=1e-5, atol=1e-6), (i, got[i].item(), want.item())
    # The backbone really is the file's (not torchvision's random init): a fresh random one differs.
    assert not torch.allclose(LPIPS(pretrained=False)(x, y), got, rtol=1e-3)


def test_lpips_explicit_path_and_heads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    vgg = random_vgg16_file(tmp_path / "vgg.pth", seed=3)
    net = LPIPS(vgg_path=vgg)
    state = torch.load(vgg, weights_only=True)
    assert torch.equal(getattr(net.net.net.slice5, "28").weight, state["features.28.weight"])
    assert torch.equal(getattr(net.net.net.slice1, "0").bias, state["features.0.bias"])
    heads = torch.load(heads_path(), map_location="cpu", weights_only=True)
    for k, lin in enumerate(net.net.lins):
        assert torch.equal(lin.model[1].weight, heads[f"lin{k}.model.1.weight"])
    x = video(1, 32).squeeze(2)
    assert net(x, x).abs().max() == 0


def reference_lpips(vgg_state: dict, heads: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 written out from the paper and the original VidTok's vidtok/modules/lpips.py: scale, VGG16 convs
    (torchvision's layout), unit-normalise over channels (+1e-10), squared difference, 1x1 heads, spatial mean,
    and the sum taken as the original does (``val = res[0]; val += res[l]``)."""
    import torch.nn.functional as F

    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def taps(h: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], (h - shift) / scale
        for i in range(30):
            if f"features.{i}.weight" in vgg_state:
                h = F.conv2d(h, vgg_state[f"features.{i}.weight"], vgg_state[f"features.{i}.bias"], padding=1)
            elif i in (4, 9, 16, 23):
                h = F.max_pool2d(h, 2, 2)
            else:
                h = F.relu(h)
            if i in (3, 8, 15, 22, 29):
                out.append(h)
        return out

    def unit(f: torch.Tensor) -> torch.Tensor:
        return f / (torch.sqrt(torch.sum(f**2, dim=1, keepdim=True)) + 1e-10)

    res = [
        F.conv2d((unit(a) - unit(b)) ** 2, heads[f"lin{k}.model.1.weight"]).mean([2, 3], keepdim=True)
        for k, (a, b) in enumerate(zip(taps(x), taps(y), strict=True))
    ]
    val = res[0]
    for r in res[1:]:
        val += r
    return val


def test_lpips_is_bit_identical_to_the_written_out_formula(tmp_path: Path) -> None:
    # The original's training loss and evaluation numbers both come from this computation: ours must equal it
    # exactly, not within a tolerance, so that loss curves and LPIPS tables reproduce digit for digit.
    vgg = random_vgg16_file(tmp_path / "vgg.pth", seed=5)
    net = LPIPS(vgg_path=vgg)
    state = torch.load(vgg, weights_only=True)
    heads = torch.load(heads_path(), map_location="cpu", weights_only=True)
    gen = torch.Generator().manual_seed(2)
    x = torch.rand((3, 3, 48, 40), generator=gen) * 2 - 1
    y = (x + 0.2 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
    got, want = net(x, y), reference_lpips(state, heads, x, y)
    assert got.shape == want.shape == (3, 1, 1, 1)
    assert torch.equal(got, want), (got - want).abs().max()
    # per_frame (the metric) is the same network on the same frames
    videos = x.unsqueeze(0).transpose(1, 2), y.unsqueeze(0).transpose(1, 2)  # (1, 3, 3, H, W)
    assert torch.equal(net.per_frame(*videos).view(3), got.view(3))


def test_lpips_is_frozen_and_chunked_passes_match() -> None:
    torch.manual_seed(0)
    full = LPIPS(pretrained=False)
    chunked = LPIPS(pretrained=False, frames_per_pass=2, checkpoint=True)
    chunked.load_state_dict(full.state_dict())
    full.train()
    assert not full.training and all(not p.requires_grad for p in full.parameters())
    x = video(5, 16).squeeze(0).transpose(0, 1)  # 5 frames as images
    y1 = (x.flip(-1) * 0.5).requires_grad_(True)
    y2 = y1.detach().clone().requires_grad_(True)
    a, b = full(x, y1), chunked(x, y2)
    assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
    (a * torch.arange(1.0, 6.0).view(5, 1, 1, 1)).sum().backward()
    (b * torch.arange(1.0, 6.0).view(5, 1, 1, 1)).sum().backward()
    assert y1.grad.abs().sum() > 0
    assert torch.allclose(y1.grad, y2.grad, rtol=1e-4, atol=1e-5 * y1.grad.abs().max().item())
    assert all(p.grad is None for p in full.parameters())


def test_lpips_offline_error_is_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VIDTOK_VGG16", raising=False)

    def no_network(url: str, dst: str, *args, **kwargs) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsError) as err:
        LPIPS(pretrained=True)
    message = str(err.value)
    assert (
        vidtok.io.auxiliary_weights.VGG16.url in message
        and "VIDTOK_VGG16" in message
        and "vgg16-397923af.pth" in message
    )
    with pytest.raises(WeightsError):
        VidTokLoss(LossConfig(), "kl", pretrained_lpips=True)
    with pytest.raises(WeightsError, match="no file at"):
        LPIPS(vgg_path=tmp_path / "missing.pth")


# ---- GAN terms ------------------------------------------------------------------------------------------
def softplus(v: float) -> float:
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


def test_gan_losses_on_known_logits() -> None:
    real = torch.tensor([2.0, 0.5, -1.0, 0.0])
    fake = torch.tensor([-2.0, 0.5, 1.0, -0.25])
    # hinge: relu(1 - real) = [0, .5, 2, 1]; relu(1 + fake) = [0, 1.5, 2, .75]
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (3.5 / 4 + 4.25 / 4))
    want = 0.5 * (sum(softplus(-r) for r in real.tolist()) / 4 + sum(softplus(f) for f in fake.tolist()) / 4)
    assert vanilla_d_loss(real, fake).item() == pytest.approx(want, rel=1e-6)
    assert hinge_g_loss(fake).item() == pytest.approx(0.1875)
    # non-saturating: cross-entropy of each sample's mean patch logit, stable at large logits
    logits = torch.tensor([[1.0, 3.0], [-2.0, 0.0], [100.0, 100.0], [-100.0, -100.0]]).view(4, 1, 1, 2)
    means = [2.0, -1.0, 100.0, -100.0]
    assert non_saturating_g_loss(logits).item() == pytest.approx(sum(softplus(-m) for m in means) / 4, rel=1e-6)
    assert math.isfinite(non_saturating_g_loss(logits * 100).item())


def test_lecam_ema_update_and_state_dict_round_trip() -> None:
    lecam = LeCAM(decay=0.999)
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-2.0, -4.0])
    lecam.update(real, fake)
    r1, f1 = 0.001 * 2.0 + 0.0, 0.001 * -3.0
    assert lecam.real_ema.item() == pytest.approx(r1, rel=1e-12) and lecam.fake_ema.item() == pytest.approx(f1)
    lecam.update(real * 2, fake * 2)
    r2, f2 = r1 * 0.999 + 4.0 * (1 - 0.999), f1 * 0.999 - 6.0 * (1 - 0.999)
    assert lecam.real_ema.item() == pytest.approx(r2, rel=1e-12) and lecam.fake_ema.item() == pytest.approx(f2)
    want = sum(max(r - f2, 0.0) ** 2 for r in real.tolist()) / 2 + sum(max(r2 - f, 0.0) ** 2 for f in fake.tolist()) / 2
    assert lecam(real, fake).item() == pytest.approx(want, rel=1e-5)
    # saved in and restored from checkpoints, as float64
    state = lecam.state_dict()
    assert set(state) == {"real_ema", "fake_ema"} and state["real_ema"].dtype == torch.float64
    restored = LeCAM()
    restored.load_state_dict(state)
    assert restored.real_ema.item() == lecam.real_ema.item() and restored.fake_ema.item() == lecam.fake_ema.item()


def test_adaptive_weight_is_the_norm_ratio() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    h = layer(torch.randn(5, 4))
    nll, g = (h**2).sum(), -h.mean() * 0.01
    gn = torch.autograd.grad(nll, layer.weight, retain_graph=True)[0]
    gg = torch.autograd.grad(g, layer.weight, retain_graph=True)[0]
    want = (gn.norm() / (gg.norm() + 1e-4)).item()
    assert want < 1e4
    got = adaptive_generator_weight(nll, g, layer.weight, disc_weight=0.2)
    assert not got.requires_grad
    assert got.item() == pytest.approx(0.2 * want, rel=1e-6)
    capped = adaptive_generator_weight(nll * 1e9, g, layer.weight, disc_weight=0.5)
    assert capped.item() == pytest.approx(0.5 * 1e4)
    (nll + g).backward()  # the graph is kept for the caller's backward
    assert layer.weight.grad is not None


# ---- latent regularisation -------------------------------------------------------------------------------
def test_kl_loss_direct_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    moments = torch.randn((2, 8, 2, 3, 3), generator=gen) * 3
    moments[:, 4:, 0, 0, 0] = torch.tensor([-40.0, 25.0, 0.5, -0.5])  # outside the [-30, 20] clamp
    mean, logvar = moments[:, :4], moments[:, 4:].clamp(-30, 20)
    want = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum() / 2
    assert kl_loss(moments).item() == pytest.approx(want.item(), rel=1e-6)


def test_entropy_weight_schedule() -> None:
    assert entropy_loss_weight(0, 0.1, 2000, 3.0) == pytest.approx(0.3)
    assert entropy_loss_weight(1000, 0.1, 2000, 3.0) == pytest.approx(0.2)
    assert entropy_loss_weight(2000, 0.1, 2000, 3.0) == 0.1
    assert entropy_loss_weight(10**6, 0.1, 2000, 3.0) == 0.1
    assert entropy_loss_weight(0, 0.1, 0, 3.0) == 0.1
    loss = VidTokLoss(LossConfig(perceptual_weight=0.0), "fsq")
    assert [loss.entropy_weight(s) for s in (0, 500, 2000)] == pytest.approx([0.3, 0.25, 0.1])


def one_shot_entropy(z: torch.Tensor, codebook: torch.Tensor, inv_t: float, gamma: float) -> tuple:
    """The original's formula written out: every position x code probability at once."""
    flat = z.movedim(1, -1).reshape(-1, z.shape[1])
    prob = (2 * inv_t * flat @ codebook.t()).softmax(-1)
    ent = lambda p: -(p * p.clamp(min=1e-5).log()).sum(-1)  # noqa: E731
    per_sample, codebook_entropy = ent(prob).mean(), ent(prob.mean(0))
    return per_sample - gamma * codebook_entropy, per_sample, codebook_entropy


def test_fsq_entropy_chunked_equals_one_shot(monkeypatch: pytest.MonkeyPatch) -> None:
    fsq = FSQ([8, 8, 8, 8])
    codebook = fsq.indices_to_codes(torch.arange(fsq.codebook_size))
    gen = torch.Generator().manual_seed(0)
    z = (torch.randn((2, 4, 2, 3, 3), generator=gen) * 0.05).requires_grad_(True)  # 36 positions
    z_ref = z.detach().clone().requires_grad_(True)
    seen = []
    real_probs = reg_module._code_probs

    def recording(*args):
        prob = real_probs(*args)
        seen.append(prob.numel())
        return prob

    monkeypatch.setattr(reg_module, "_code_probs", recording)
    chunk = 5 * 4096  # 5 positions per chunk: 8 chunks, the last one short
    got = fsq_entropy_loss(z, codebook, 100.0, 1.0, chunk_size=chunk)
    n_forward = len(seen)
    want = one_shot_entropy(z_ref, codebook, 100.0, 1.0)
    for a, b in zip((got.entropy_loss, got.per_sample_entropy, got.codebook_entropy), want, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (a.item(), b.item())
    assert got.codebook_entropy.item() > 1.0  # a spread-out code distribution: the test is not trivial
    weights = (0.7, -0.4, 1.3)  # every output's gradient path
    outputs = (got.entropy_loss, got.per_sample_entropy, got.codebook_entropy)
    sum(w * t for w, t in zip(weights, outputs, strict=True)).backward()
    sum(w * t for w, t in zip(weights, want, strict=True)).backward()
    assert z_ref.grad.abs().max() > 0
    scale = z_ref.grad.abs().max().item()
    assert torch.allclose(z.grad, z_ref.grad, rtol=1e-4, atol=1e-5 * scale), (z.grad - z_ref.grad).abs().max()
    # bounded memory: at most `chunk` probabilities at a time, in forward and in the backward recomputation
    assert n_forward == 8 and len(seen) == 16 and max(seen) <= chunk


def test_fsq_code_distribution_is_averaged_over_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    fsq = FSQ([4, 4, 4])
    codebook = fsq.indices_to_codes(torch.arange(fsq.codebook_size))
    z = torch.randn(2, 3, 2, 2, 2, generator=torch.Generator().manual_seed(2)) * 0.2

    def codebook_entropy(world: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if world:  # a second process with a uniform code distribution
            uniform = 1.0 / fsq.codebook_size
            monkeypatch.setattr(reg_module, "is_distributed", lambda: True)
            monkeypatch.setattr(reg_module.dist, "get_world_size", lambda: 2)
            monkeypatch.setattr(reg_module.dist, "all_reduce", lambda t: t.add_(uniform))
        leaf = z.clone().requires_grad_(True)
        out = fsq_entropy_loss(leaf, codebook).codebook_entropy
        out.backward()
        return out.detach(), leaf.grad

    local, local_grad = codebook_entropy(False)
    pooled, pooled_grad = codebook_entropy(True)
    # the entropy of the pooled distribution; gradients reach this process's share of it (1 / world size)
    leaf = z.clone().requires_grad_(True)
    flat = leaf.movedim(1, -1).reshape(-1, 3)
    avg = ((200 * flat @ codebook.t()).softmax(-1).mean(0) + 1.0 / fsq.codebook_size) / 2
    want = -(avg * avg.clamp(min=1e-5).log()).sum()
    want.backward()
    assert torch.allclose(pooled, want, rtol=1e-6) and pooled > local
    assert torch.allclose(pooled_grad, leaf.grad, rtol=1e-4, atol=1e-5 * leaf.grad.abs().max().item())
    assert not torch.allclose(pooled_grad, local_grad, rtol=1e-2)


def test_fsq_entropy_ignores_autocast() -> None:
    fsq = FSQ([4, 4, 4])
    codebook = fsq.indices_to_codes(torch.arange(fsq.codebook_size))
    z = torch.randn(1, 3, 2, 2, 2) * 0.1
    plain = fsq_entropy_loss(z, codebook)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (z @ z.transpose(-1, -2)).dtype == torch.bfloat16  # autocast is really on
        cast = fsq_entropy_loss(z, codebook)
    assert cast.entropy_loss.dtype == torch.float32
    assert torch.allclose(cast.entropy_loss, plain.entropy_loss, rtol=1e-6, atol=0)


def test_commitment_loss() -> None:
    z = torch.tensor([[0.2, -0.7]], requires_grad=True)
    codes = torch.tensor([[0.25, -0.75]], requires_grad=True)
    loss = commitment_loss(z, codes)
    assert loss.item() == pytest.approx((0.05**2 + 0.05**2) / 2)
    loss.backward()
    assert codes.grad is None and z.grad is not None


def test_fsq_regularization_terms() -> None:
    tok = tiny(FSQ_NAME)
    loss = VidTokLoss(LossConfig(perceptual_weight=0.0), "fsq")
    moments = tok.encode_moments(video(5, 32))
    for step, weight in ((0, 0.3), (1000, 0.2), (4000, 0.1)):
        codes, terms = loss.regularization(moments, tok.regularizer, step)
        assert torch.equal(codes, tok.regularizer(moments))
        assert terms["entropy_weight"].item() == pytest.approx(weight)
        assert torch.allclose(terms["commitment_loss"], ((moments - codes.detach()) ** 2).mean())
        want = weight * terms["entropy_loss"] + 0.25 * terms["commitment_loss"]
        assert torch.allclose(terms["aux_loss"], want, rtol=1e-6)
    with pytest.raises(TypeError, match="FSQ regularizer"):
        loss.regularization(moments, tiny(KL_NAME).regularizer, 0)


# ---- discriminators ---------------------------------------------------------------------------------------
ORIGINAL_2D_KEYS = [
    "main.0.weight", "main.0.bias", "main.2.weight", "main.3.weight", "main.3.bias", "main.3.running_mean",
    "main.3.running_var", "main.3.num_batches_tracked", "main.5.weight", "main.6.weight", "main.6.bias",
    "main.6.running_mean", "main.6.running_var", "main.6.num_batches_tracked", "main.8.weight", "main.9.weight",
    "main.9.bias", "main.9.running_mean", "main.9.running_var", "main.9.num_batches_tracked", "main.11.weight",
    "main.11.bias",
]  # fmt: skip


def test_discriminator_layout_shapes_and_init() -> None:
    torch.manual_seed(0)
    d2, d3 = NLayerDiscriminator(), NLayerDiscriminator3D()
    assert list(d2.state_dict()) == ORIGINAL_2D_KEYS and list(d3.state_dict()) == ORIGINAL_2D_KEYS
    assert d2.main[8].weight.shape == (512, 256, 4, 4) and d3.main[8].weight.shape == (512, 256, 3, 3, 3)
    assert d2(torch.zeros(2, 3, 32, 32)).shape == (2, 1, 2, 2)
    assert d3(torch.zeros(1, 3, 8, 32, 32)).shape == (1, 1, 2, 4, 4)
    assert d2.main[8].weight.std().item() == pytest.approx(0.02, rel=0.05)
    bn = d2.main[9]
    assert bn.bias.abs().max() == 0 and (bn.weight - 1).std().item() == pytest.approx(0.02, rel=0.2)


def test_load_discriminator_from_full_state_dict() -> None:
    torch.manual_seed(0)
    source, target = NLayerDiscriminator(), NLayerDiscriminator()
    full = {f"loss.discriminator.{k}": v for k, v in source.state_dict().items()}
    full["encoder.conv_in.weight"] = torch.zeros(1)
    full["loss.logvar"] = torch.tensor(0.5)
    load_discriminator_state_dict(target, full)
    pairs = zip(source.state_dict().values(), target.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    loss = VidTokLoss(LossConfig(perceptual_weight=0.0), "kl")
    loss.load_original_state_dict(full)
    assert loss.logvar.item() == 0.5 and torch.equal(loss.discriminator.main[0].weight, source.main[0].weight)
    broken = dict(full)
    del broken["loss.discriminator.main.9.running_var"]
    broken["loss.discriminator.main.12.weight"] = torch.zeros(1)
    with pytest.raises(vidtok.CheckpointError, match=r"missing.*main\.9\.running_var.*unexpected.*main\.12\.weight"):
        load_discriminator_state_dict(target, broken)
    three_d = {f"loss.discriminator.{k}": v for k, v in NLayerDiscriminator3D().state_dict().items()}
    with pytest.raises(vidtok.CheckpointError, match="shape mismatch.*disc_type"):
        load_discriminator_state_dict(target, three_d)
    with pytest.raises(vidtok.CheckpointError, match="starting with 'loss.discriminator.'"):
        load_discriminator_state_dict(target, {"encoder.x": torch.zeros(1)})


# ---- config -----------------------------------------------------------------------------------------------
def test_config_defaults_and_validation() -> None:
    c = LossConfig()
    assert (c.disc_start, c.disc_weight, c.disc_type, c.lecam_weight, c.kl_weight) == (10001, 0.2, "2d", 0.005, 1e-6)
    assert (c.entropy_weight, c.entropy_annealing_steps, c.entropy_annealing_factor) == (0.1, 2000, 3.0)
    assert (c.commitment_weight, c.gen_loss, c.disc_loss, c.learn_logvar) == (0.25, "non_saturating", "hinge", True)
    for kwargs, field in (
        ({"disc_type": "4d"}, "disc_type"),
        ({"gen_loss": "wasserstein"}, "gen_loss"),
        ({"disc_weight": -1.0}, "disc_weight"),
        ({"disc_start": 1.5}, "disc_start"),
        ({"kl_weight": float("nan")}, "kl_weight"),
        ({"lecam_decay": 1.0}, "lecam_decay"),
        ({"learn_logvar": "yes"}, "learn_logvar"),
        ({"lpips_frames_per_pass": 0}, "lpips_frames_per_pass"),
    ):
        with pytest.raises(ConfigError, match=f"loss.{field}"):
            LossConfig(**kwargs)
    with pytest.raises(ValueError, match="regularizer must be one of"):
        VidTokLoss(LossConfig(perceptual_weight=0.0), "vq")
    assert original_steps(10000) == (10000, 20000, 20001)


# ---- full paths on tiny tokenizers -------------------------------------------------------------------------
def train_step(tok: vidtok.Tokenizer, loss: VidTokLoss, x: torch.Tensor, step: int) -> tuple[dict, dict]:
    """One generator and one discriminator optimisation step; returns the logs and checks gradients."""
    opt_g = torch.optim.Adam(list(tok.parameters()) + list(loss.generator_parameters()), lr=1e-3)
    opt_d = torch.optim.Adam(loss.discriminator_parameters(), lr=1e-3)
    z, terms = loss.regularization(tok.encode_moments(x), tok.regularizer, step)
    recon = tok.decode(z)[:, :, : x.shape[2]]
    g, logs = loss.generator_loss(x, recon, terms, step, last_layer(tok))
    opt_g.zero_grad()
    g.backward()
    assert torch.isfinite(g) and all(torch.isfinite(v).all() for v in logs.values())
    for part in (tok.encoder, tok.decoder):
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(gr).all() for gr in grads) and sum(gr.abs().sum() for gr in grads) > 0
    assert all(p.grad is None for p in loss.discriminator_parameters())  # the generator step leaves D alone
    if loss.config.learn_logvar:
        assert loss.logvar.grad is not None and loss.logvar.grad.abs() > 0
    before = unwrap_conv(tok.decoder.conv_out).weight.detach().clone()
    opt_g.step()
    assert not torch.equal(before, unwrap_conv(tok.decoder.conv_out).weight)
    d, dlogs = loss.discriminator_loss(x, recon, step)
    opt_d.zero_grad()
    d.backward()
    assert torch.isfinite(d) and all(torch.isfinite(v).all() for v in dlogs.values())
    grads = [p.grad for p in loss.discriminator_parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads) and sum(gr.abs().sum() for gr in grads) > 0
    opt_d.step()
    return logs, dlogs


def test_kl_2d_discriminator_step_after_disc_start() -> None:
    tok = tiny(KL_NAME)
    loss = VidTokLoss(LossConfig(disc_start=10), "kl", pretrained_lpips=False).train()
    logs, dlogs = train_step(tok, loss, video(5, 32), step=10)
    assert logs["disc_factor"] == 1.0 and logs["d_weight"] > 0 and logs["g_loss"] > 0 and logs["kl_loss"] > 0
    assert logs["p_loss"] > 0 and dlogs["lecam_loss"] > 0 and dlogs["lecam_real_ema"] != 0
    assert {"total_loss", "nll_loss", "rec_loss", "logvar"} <= set(logs)


def test_fsq_3d_discriminator_vanilla_hinge_step() -> None:
    tok = tiny(FSQ_NAME)
    cfg = LossConfig(disc_start=0, disc_type="3d", disc_loss="vanilla", gen_loss="hinge", learn_logvar=False)
    loss = VidTokLoss(cfg, "fsq", pretrained_lpips=False).train()
    logs, dlogs = train_step(tok, loss, video(8, 32), step=3)
    assert list(loss.generator_parameters()) == [] and loss.logvar.grad is None
    assert logs["d_weight"] > 0 and logs["aux_loss"] != 0 and logs["codebook_entropy"] > 0
    assert dlogs["disc_loss"] > 0


def test_before_disc_start_skips_the_discriminator(monkeypatch: pytest.MonkeyPatch) -> None:
    tok = tiny(KL_NAME)
    cfg = LossConfig(perceptual_weight=0.0, logvar_init=0.4, disc_start=20001)
    loss = VidTokLoss(cfg, "kl").train()
    calls = []
    loss.discriminator.register_forward_hook(lambda *args: calls.append(1))
    x = video(5, 32, batch=1)
    moments = tok.encode_moments(x)
    z, terms = loss.regularization(moments, tok.regularizer, 0, sample=False)
    recon = tok.decode(z)[:, :, :5]
    g, logs = loss.generator_loss(x, recon, terms, 20000, last_layer=None)
    assert calls == [] and logs["d_weight"] == 0 and logs["disc_factor"] == 0 and logs["g_loss"] == 0
    # the original's NLL: per-pixel L1 / exp(logvar) + logvar, summed and divided by B*T; + kl_weight * KL
    nll = ((x - recon).abs() / math.exp(0.4) + 0.4).sum() / 5
    assert torch.allclose(logs["nll_loss"], nll, rtol=1e-6)
    assert torch.allclose(g, nll + 1e-6 * kl_loss(moments), rtol=1e-6)
    d, dlogs = loss.discriminator_loss(x, recon, 20000)
    assert d.item() == 0 and d.requires_grad and calls == [1, 1]
    assert loss.lecam.fake_ema.item() == pytest.approx(0.001 * dlogs["logits_fake"].item(), rel=1e-5)
    _, later = loss.discriminator_loss(x, recon, 20001)
    assert later["disc_factor"] == 1.0 and later["disc_loss"] > 0
    ema = loss.lecam.real_ema.clone()
    loss.eval().discriminator_loss(x, recon, 20001)  # evaluation does not move the averages
    assert torch.equal(loss.lecam.real_ema, ema)


def test_generator_loss_with_perceptual_term_matches_formula() -> None:
    torch.manual_seed(0)
    loss = VidTokLoss(LossConfig(logvar_init=-0.3), "kl", pretrained_lpips=False)
    x, y = video(3, 16, batch=2, seed=1), video(3, 16, batch=2, seed=2)
    _, logs = loss.generator_loss(x, y, {}, 0)
    frames = lambda v: v.transpose(1, 2).reshape(6, 3, 16, 16)  # noqa: E731
    p = loss.perceptual(frames(x), frames(y))
    rec = (frames(x) - frames(y)).abs() + p
    assert torch.allclose(logs["p_loss"], p.mean()) and torch.allclose(logs["rec_loss"], rec.mean())
    want = (rec / math.exp(-0.3) - 0.3).sum() / 6
    assert torch.allclose(logs["nll_loss"], want, rtol=1e-6)


def test_loss_state_stays_out_of_the_tokenizer() -> None:
    tok = tiny(KL_NAME)
    keys = set(tok.state_dict())
    loss = VidTokLoss(LossConfig(), "kl", pretrained_lpips=False)
    assert set(tok.state_dict()) == keys
    storages = {t.untyped_storage().data_ptr() for t in tok.state_dict().values()}
    lpips_tensors = list(loss.perceptual.state_dict().values())
    for t in list(loss.state_dict().values()) + lpips_tensors:
        assert t.untyped_storage().data_ptr() not in storages
    state = loss.state_dict()
    assert "logvar" in state and "lecam.real_ema" in state and "discriminator.main.0.weight" in state
    assert not any("feature" in k or "head" in k for k in state)  # no LPIPS weights in training checkpoints
    assert {id(p) for p in loss.parameters()} == {id(loss.logvar)} | {id(p) for p in loss.discriminator_parameters()}
    loss.double()  # moves follow into the unregistered LPIPS network
    assert loss.perceptual.net.lins[0].model[1].weight.dtype == torch.float64


# ---- parity with the original (optional) -----------------------------------------------------------------
def original_parity(workdir: Path) -> dict[str, float]:
    """Run both implementations on the same tensors with the same weights; for each compared quantity the
    largest normwise relative difference, max |ours - original| / max |original|."""
    losses, regularizers = original_module("modules.losses"), original_module("modules.regularizers")
    diffs: dict[str, float] = {}

    def compare(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
        a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
        rel = ((a - b).abs().max() / b.abs().max().clamp(min=1e-12)).item()
        diffs[name] = max(diffs.get(name, 0.0), rel)

    (workdir / "checkpoints" / "lpips").mkdir(parents=True, exist_ok=True)
    shutil.copy(heads_path(), workdir / "checkpoints" / "lpips" / "vgg.pth")
    for disc_type, disc_loss, ce in (("2d", "hinge", True), ("3d", "vanilla", False)):
        torch.manual_seed(0)
        orig = losses.GeneralLPIPSWithDiscriminator(
            disc_start=5, logvar_init=0.0, disc_weight=0.2, disc_type=disc_type, lecam_loss_weight=0.005,
            disc_loss=disc_loss, dims=3, learn_logvar=True, gen_loss_cross_entropy=ce,
            regularization_weights={"aux_loss": 1.0, "kl_loss": 1e-6},
        )  # fmt: skip
        cfg = LossConfig(
            disc_start=5, disc_type=disc_type, disc_loss=disc_loss, gen_loss="non_saturating" if ce else "hinge"
        )
        ours = VidTokLoss(cfg, "kl", pretrained_lpips=True)
        ours.discriminator.load_state_dict(orig.discriminator.state_dict())
        orig.train()
        orig.perceptual_loss.eval()  # the original leaves LPIPS dropout on in training; ours is a fixed metric
        ours.train()
        with torch.no_grad():
            orig.logvar.fill_(0.3)
            ours.logvar.fill_(0.3)
        compare("lpips", ours.perceptual(*[v[:, :, 0] for v in (video(2, 32, 2, 5), video(2, 32, 2, 6))]),
                orig.perceptual_loss(*[v[:, :, 0] for v in (video(2, 32, 2, 5), video(2, 32, 2, 6))]))  # fmt: skip
        tok = tiny(KL_NAME)
        x = video(5, 32, batch=2)
        moments = tok.encode_moments(x)
        z_orig, reg_orig = regularizers.DiagonalGaussianRegularizer()(moments)
        z_ours, reg_ours = ours.regularization(moments, tok.regularizer, 0, sample=False)
        compare("kl_loss", reg_ours["kl_loss"], reg_orig["kl_loss"])
        recon = tok.decode(z_ours)[:, :, :5]
        for step in (0, 6):
            g_o, log_o = orig(reg_orig, x, recon, 0, step, last_layer=last_layer(tok))
            g_u, log_u = ours.generator_loss(x, recon, reg_ours, step, last_layer(tok))
            compare("generator_loss", g_u, g_o)
            # before disc_start ours skips the discriminator (its term is 0 either way) and logs g_loss, d_weight 0
            for key in ("nll_loss", "rec_loss", "p_loss") + (("g_loss", "d_weight") if step else ()):
                compare(f"generator_log_{key}", log_u[key], log_o[f"train/{key}"])
            grads_o = torch.autograd.grad(g_o, [orig.logvar, last_layer(tok)], retain_graph=True)
            grads_u = torch.autograd.grad(g_u, [ours.logvar, last_layer(tok)], retain_graph=True)
            compare("generator_grad_logvar", grads_u[0], grads_o[0])
            compare("generator_grad_last_layer", grads_u[1], grads_o[1])
        for step in (0, 6, 7):
            d_o, dlog_o = orig(reg_orig, x, recon, 1, step, last_layer=last_layer(tok))
            d_u, dlog_u = ours.discriminator_loss(x, recon, step)
            compare("discriminator_loss", d_u, d_o)
            compare("lecam_loss", dlog_u["lecam_loss"], dlog_o["train/lecam_loss"])
            compare("lecam_ema", ours.lecam.real_ema, torch.tensor(orig.lecam_ema.logits_real_ema, dtype=torch.float64))
            compare("lecam_ema", ours.lecam.fake_ema, torch.tensor(orig.lecam_ema.logits_fake_ema, dtype=torch.float64))
    # FSQ aux loss and its gradient, 4096 codes (one-shot vs chunked) and 262,144 codes
    for levels, chunk in (([8, 8, 8, 8], 4096 * 7), ([8, 8, 8, 5, 5, 5], 2**24), ([8, 8, 8, 8, 8, 8], 2**20)):
        fsq_orig = regularizers.FSQRegularizer(
            levels, entropy_loss_weight=0.1, entropy_loss_annealing_steps=2000, entropy_loss_annealing_factor=3,
            commitment_loss_weight=0.25,
        )  # fmt: skip
        ours = VidTokLoss(LossConfig(perceptual_weight=0.0, entropy_chunk_size=chunk), "fsq")
        fsq = FSQ(levels)
        z = torch.randn((2, len(levels), 2, 4, 4), generator=torch.Generator().manual_seed(1)) * 0.7
        for step in (0, 1000, 2500):
            za, zb = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
            out, log = fsq_orig(za, n_steps=step)
            codes, terms = ours.regularization(zb, fsq, step)
            compare("fsq_codes", codes, out)
            compare("fsq_aux_loss", terms["aux_loss"], log["aux_loss"])
            log["aux_loss"].backward()
            terms["aux_loss"].backward()
            compare("fsq_aux_grad", zb.grad, za.grad)
    return diffs


@needs_original
def test_parity_with_original(vgg_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the original looks for its LPIPS heads in ./checkpoints/lpips
    diffs = original_parity(tmp_path)
    # Gradients of the FSQ entropy pass through softmax(200 z.c): a 1-ulp change of a logit moves p by ~1e-5
    # relative, so two float32 evaluations agree to ~1e-4 at best (the original's own error vs float64 is 2e-5).
    bad = {k: v for k, v in diffs.items() if v > (1e-4 if k.endswith("grad") else 1e-5)}
    assert not bad, diffs
