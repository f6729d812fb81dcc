"""Video metrics: PSNR / SSIM / LPIPS against independent references, Fréchet distance against scipy, FVD end to end
with a stand-in TorchScript detector, and VideoMetrics gathered over 2 processes equal to 1 process.

No pretrained weights are needed: a randomly initialised VGG16 state dict stands in for torchvision's file in a
temporary TORCH_HOME, and a tiny scripted module with I3D's call signature stands in for the FVD detector.
"""

from __future__ import annotations

import math
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from standins import StandInI3D, go_offline, make_vgg_home, save_detector, use_torch_home
from torch import Tensor

from vidtok.errors import WeightsError
from vidtok.io.auxiliary_weights import VGG16
from vidtok.metrics import (
    LPIPS,
    PSNR_MAX_DB,
    FeatureStats,
    VideoMetrics,
    frechet_distance,
    load_i3d_detector,
    psnr_per_frame,
    ssim_per_frame,
)


def video(b: int, t: int, h: int, w: int, seed: int) -> Tensor:
    return torch.rand((b, 3, t, h, w), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def degrade(x: Tensor, seed: int, std: float = 0.15) -> Tensor:
    """A plausible reconstruction: x plus smooth-ish noise, overshooting [-1, 1] a little as decoders do."""
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)) * std
    return x * 0.9 + noise + 0.02


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def vgg_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_vgg_home(tmp_path_factory.mktemp("torch_home"))


@pytest.fixture
def torch_home(monkeypatch: pytest.MonkeyPatch, vgg_home: Path) -> Path:
    use_torch_home(monkeypatch, vgg_home)
    return vgg_home


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return go_offline(monkeypatch, tmp_path)


# ---------------------------------------------------------------------------------------------- PSNR / SSIM


def test_psnr_matches_numpy_and_caps_perfect_frames() -> None:
    real = video(2, 3, 16, 20, seed=0)
    fake = degrade(real, seed=1)
    fake[1, :, 2] = real[1, :, 2]  # one perfect frame
    got = psnr_per_frame(real, fake)

    x = (np.clip(real.numpy().astype(np.float64), -1, 1) + 1) / 2
    y = (np.clip(fake.numpy().astype(np.float64), -1, 1) + 1) / 2
    mse = ((x - y) ** 2).mean(axis=(1, 3, 4))  # (B, T)
    with np.errstate(divide="ignore"):
        want = np.minimum(10 * np.log10(1.0 / mse), PSNR_MAX_DB)

    assert got.shape == (2, 3) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-4)
    assert got[1, 2].item() == PSNR_MAX_DB
    assert 10 < got[0, 0].item() < 40


def reference_ssim(x: Tensor, y: Tensor, data_range: float = 1.0, border: str = "valid") -> Tensor:
    """SSIM per image (N, 3, H, W) in float64: 11-tap Gaussian (sigma 1.5) windows, K1=0.01, K2=0.03, mean over channels
    and positions; ``valid``: windows inside the image only; ``reflect``: reflect-padded by 5 px (torchmetrics)."""
    x, y = x.double(), y.double()
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5**2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).expand(3, 1, 11, 11)
    if border == "reflect":
        x, y = (F.pad(v, (5, 5, 5, 5), mode="reflect") for v in (x, y))

    def blur(v: Tensor) -> Tensor:
        return F.conv2d(v, window, groups=3)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))


def frames01(v: Tensor) -> Tensor:
    return (v.clamp(-1, 1).permute(0, 2, 1, 3, 4).flatten(0, 1) + 1) / 2


@pytest.mark.parametrize("border", ["valid", "reflect"])
def test_ssim_matches_independent_implementation(border: str) -> None:
    real = video(2, 3, 24, 30, seed=2)
    # Smooth the content so SSIM is far from 0 and border handling matters.
    real = F.avg_pool3d(real, (1, 3, 3), stride=1, padding=(0, 1, 1))
    fake = degrade(real, seed=3, std=0.1)
    got = ssim_per_frame(real, fake, border=border)
    want = reference_ssim(frames01(real), frames01(fake), border=border).view(2, 3)
    assert got.shape == (2, 3)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=2e-5)
    other = reference_ssim(frames01(real), frames01(fake), border="reflect" if border == "valid" else "valid")
    assert (other.view(2, 3) - want).abs().max() > 1e-3, "valid and reflect conventions should differ measurably"


def test_ssim_needs_unit_range_and_optional_downsampling() -> None:
    real = F.avg_pool3d(video(1, 2, 32, 32, seed=4), (1, 5, 5), stride=1, padding=(0, 2, 2))
    fake = degrade(real, seed=5, std=0.05)
    ours = ssim_per_frame(real, fake)
    # [-1, 1] fed straight in (with its true range 2, or with data_range 1) gives other numbers: not shift-invariant.
    naive_r2 = reference_ssim(real.permute(0, 2, 1, 3, 4)[0], fake.clamp(-1, 1).permute(0, 2, 1, 3, 4)[0], 2.0)
    naive_r1 = reference_ssim(real.permute(0, 2, 1, 3, 4)[0], fake.clamp(-1, 1).permute(0, 2, 1, 3, 4)[0], 1.0)
    assert (ours[0].double() - naive_r2).abs().min() > 0.02
    assert (ours[0].double() - naive_r1).abs().min() > 0.02

    # 384 px: the original's avg-pool by round(384 / 256) = 2 before SSIM.
    big = F.interpolate(video(1, 1, 48, 48, seed=6)[:, :, 0], size=(384, 400), mode="bilinear").unsqueeze(2)
    big_fake = degrade(big, seed=7, std=0.1)
    want = reference_ssim(F.avg_pool2d(frames01(big), 2), F.avg_pool2d(frames01(big_fake), 2))
    torch.testing.assert_close(ssim_per_frame(big, big_fake, downsample=True)[0].double(), want, rtol=0, atol=2e-5)
    assert abs(ssim_per_frame(big, big_fake)[0, 0].item() - want.item()) > 1e-3


def test_frame_metrics_reject_bad_shapes() -> None:
    x = video(1, 2, 16, 16, seed=0)
    with pytest.raises(ValueError, match=r"same shape.*\(1, 3, 2, 16, 16\).*\(1, 3, 2, 16, 8\)"):
        psnr_per_frame(x, x[..., :8])
    with pytest.raises(ValueError, match=r"expected shape \(B, 3, T, H, W\), found \(3, 2, 16, 16\)"):
        ssim_per_frame(x[0], x[0])
    with pytest.raises(ValueError, match="at least 11x11 pixels, found 8x8"):
        ssim_per_frame(x[..., :8, :8], x[..., :8, :8])


# ---------------------------------------------------------------------------------------------- LPIPS


def test_lpips_matches_torchmetrics_per_frame(torch_home: Path) -> None:
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    real = video(2, 3, 16, 24, seed=8)  # VGG16's five stages need 16 px; small frames keep this fast
    fake = degrade(real, seed=9).clamp(-1, 1)
    metric = LPIPS()
    got = metric.per_frame(real, fake, frames_per_pass=4)

    reference = LearnedPerceptualImagePatchSimilarity(net_type="vgg", reduction="none", normalize=False)
    want = reference(frames01(fake) * 2 - 1, frames01(real) * 2 - 1).view(2, 3)
    assert got.shape == (2, 3)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert got.min() > 0 and (got[0] - got[1]).abs().max() > 0
    # Frozen: stays in eval mode, no gradients, same numbers whatever the frame batching.
    metric.train()
    assert not metric.training and not metric.net.training
    assert not any(p.requires_grad for p in metric.parameters())
    torch.testing.assert_close(metric.per_frame(real, fake, frames_per_pass=1), got, rtol=1e-5, atol=1e-6)


def test_lpips_rejects_a_file_that_is_not_vgg16(offline: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "not_vgg.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(
        ValueError, match=r"not_vgg\.pth: expected a torchvision vgg16 .* found keys like \['conv\.weight'\]"
    ):
        LPIPS(vgg_path=wrong)


def test_lpips_offline_error_says_where_to_put_the_file(offline: Path) -> None:
    with pytest.raises(WeightsError) as err:
        LPIPS()
    msg = str(err.value)
    assert "could not be downloaded" in msg and VGG16.url in msg
    assert str(offline / "hub" / "checkpoints" / VGG16.filename) in msg and "$VIDTOK_VGG16" in msg


# ---------------------------------------------------------------------------------------------- Fréchet distance


def scipy_frechet(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.real((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1 + s2 - 2 * covmean)))


def gaussian_stats(rng: np.random.Generator, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    samples = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * rng.uniform(0.5, 2) + rng.normal(size=d)
    return samples.mean(0), np.cov(samples, rowvar=False)


@pytest.mark.parametrize("d", [4, 16, 64])
def test_frechet_distance_matches_scipy_on_full_rank(d: int) -> None:
    rng = np.random.default_rng(d)
    (mu1, s1), (mu2, s2) = gaussian_stats(rng, 4 * d, d), gaussian_stats(rng, 4 * d, d)
    want = scipy_frechet(mu1, s1, mu2, s2)
    assert want > 1
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-10)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(want, rel=1e-10)
    # torch inputs (any dtype) are taken in float64
    got = frechet_distance(*(torch.from_numpy(a) for a in (mu1, s1, mu2, s2)))
    assert got == pytest.approx(want, rel=1e-10)
    # identical distributions: ~0 relative to the covariances' scale
    assert abs(frechet_distance(mu1, s1, mu1, s1)) < 1e-10 * np.trace(s1)


def test_frechet_distance_rank_deficient_and_known_values() -> None:
    rng = np.random.default_rng(7)
    d = 12
    a, b = rng.standard_normal((5, d)), rng.standard_normal((8, d)) * 2  # fewer samples than dims: rank 4 and 7
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    assert np.linalg.matrix_rank(s1) == 4
    # Exact reference without any matrix square root: with s = L L^T (L the scaled centred samples),
    # tr((s1 s2)^(1/2)) is the nuclear norm of L1^T L2.
    l1, l2 = (a - mu1).T / math.sqrt(len(a) - 1), (b - mu2).T / math.sqrt(len(b) - 1)
    nuclear = np.linalg.svd(l1.T @ l2, compute_uv=False).sum()
    exact = float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * nuclear)
    got = frechet_distance(mu1, s1, mu2, s2)
    assert got == pytest.approx(exact, rel=1e-12)
    assert got == pytest.approx(scipy_frechet(mu1, s1, mu2, s2), rel=1e-6)  # sqrtm loses ~1e-8 when singular

    # Commuting (diagonal) covariances, one singular: sum((sqrt(a) - sqrt(b))^2) + |mu1 - mu2|^2.
    va, vb = np.array([4.0, 1.0, 0.0, 2.0]), np.array([1.0, 9.0, 3.0, 0.0])
    dm = np.array([1.0, -2.0, 0.0, 0.5])
    want = float(((np.sqrt(va) - np.sqrt(vb)) ** 2).sum() + dm @ dm)
    assert frechet_distance(dm, np.diag(va), np.zeros(4), np.diag(vb)) == pytest.approx(want, rel=1e-12)

    with pytest.raises(ValueError, match=r"sigma2: expected shape \(4, 4\) for 4-dim means, found \(3, 3\)"):
        frechet_distance(dm, np.diag(va), dm, np.eye(3))


def test_feature_stats_merge_equals_numpy() -> None:
    feats = torch.randn(23, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float32) * 3 + 10
    whole, parts = FeatureStats(), [FeatureStats(), FeatureStats()]
    whole.update(feats)
    parts[0].update(feats[:4])
    parts[0].update(feats[4:9].numpy())
    parts[1].update(feats[9:])
    merged = FeatureStats().merge(parts[0]).merge(FeatureStats()).merge(parts[1])
    want_mu, want_cov = feats.double().numpy().mean(0), np.cov(feats.double().numpy(), rowvar=False)
    for stats in (whole, merged):
        mu, cov = stats.mean_cov()
        assert stats.count == 23
        np.testing.assert_allclose(mu, want_mu, rtol=1e-12)
        np.testing.assert_allclose(cov, want_cov, rtol=1e-10)
    with pytest.raises(ValueError, match="statistics hold 5-dim features, found 4"):
        whole.update(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="at least 2 feature vectors, found 1"):
        one = FeatureStats()
        one.update(torch.zeros(1, 3))
        one.mean_cov()


# ---------------------------------------------------------------------------------------------- FVD


def reference_i3d_input(v: Tensor, frames: int) -> Tensor:
    """First ``frames`` frames, shorter side bilinearly resized to 224, center crop 224x224, in [-1, 1]."""
    b, c, t, h, w = v.shape
    x = v[:, :, :frames].clamp(-1, 1).transpose(1, 2).flatten(0, 1)
    new_h, new_w = (224, math.ceil(w * 224 / h)) if h <= w else (math.ceil(h * 224 / w), 224)
    x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)
    top, left = (new_h - 224) // 2, (new_w - 224) // 2
    x = x[:, :, top : top + 224, left : left + 224]
    return x.reshape(b, frames, c, 224, 224).transpose(1, 2)


def test_fvd_end_to_end_with_stand_in_detector(offline: Path, tmp_path: Path) -> None:
    path = tmp_path / "standin_i3d.pt"
    sha = save_detector(path, frames=16)
    real = video(6, 17, 24, 36, seed=10)  # 17-frame causal clips, non-square frames
    fake = degrade(real, seed=11, std=0.3)

    metrics = VideoMetrics(lpips=False, fvd=True, detector_path=path, detector_sha256=sha)
    metrics.update(real[:4], fake[:4], [f"clip{i}" for i in range(4)])
    metrics.update(real[4:], fake[4:], [f"clip{i}" for i in range(4, 6)])
    summary = metrics.compute()

    detector = StandInI3D(frames=16)  # the scripted module's eager twin, same weights
    with torch.no_grad():
        fr = detector(reference_i3d_input(real, 16), False, False, True).double().numpy()
        ff = detector(reference_i3d_input(fake, 16), False, False, True).double().numpy()
    want = scipy_frechet(fr.mean(0), np.cov(fr, rowvar=False), ff.mean(0), np.cov(ff, rowvar=False))
    assert summary["clips"] == 6 and "lpips" not in summary
    assert want > 0.1
    assert summary["fvd"] == pytest.approx(want, rel=1e-6)

    metrics.reset()
    metrics.update(real[:1], real[:1], ["one"])
    assert math.isnan(metrics.compute()["fvd"]) and metrics.compute()["clips"] == 1
    with pytest.raises(ValueError, match="first 16 frames of each clip; found clips of 8 frames"):
        metrics.update(real[:1, :, :8], fake[:1, :, :8], ["short"])


def test_detector_sha256_and_offline_errors(offline: Path, tmp_path: Path) -> None:
    path = tmp_path / "standin_i3d.pt"
    sha = save_detector(path, frames=16)
    load_i3d_detector(path, sha256=sha)
    load_i3d_detector(path, sha256=None)
    # Default: the real I3D's hash, which a stand-in cannot have.
    with pytest.raises(WeightsError, match=rf"SHA-256 {sha}, expected bec6519f"):
        VideoMetrics(lpips=False, fvd=True, detector_path=path)
    with pytest.raises(WeightsError, match=rf"has SHA-256 {sha}, expected {'0' * 64}"):
        load_i3d_detector(path, sha256="0" * 64)
    with pytest.raises(WeightsError) as err:
        load_i3d_detector()
    msg = str(err.value)
    assert "could not be downloaded" in msg and "i3d_torchscript.pt" in msg
    assert str(offline / "hub" / "checkpoints" / "i3d_torchscript.pt") in msg and "$VIDTOK_I3D" in msg
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torchscript archive")
    with pytest.raises(WeightsError, match=r"junk\.pt is not a loadable TorchScript file"):
        load_i3d_detector(junk, sha256=None)


# ---------------------------------------------------------------------------------------------- VideoMetrics


def test_video_metrics_records_and_summary() -> None:
    real = video(3, 4, 16, 16, seed=12)
    fake = degrade(real, seed=13)
    m = VideoMetrics(lpips=False)
    m.update(real[:2], fake[:2], ["a", "b"])
    m.update(real[2:], fake[2:], ["c"])
    psnr, ssim = psnr_per_frame(real, fake), ssim_per_frame(real, fake)

    assert [r["name"] for r in m.records] == ["a", "b", "c"]
    for i, rec in enumerate(m.records):
        assert rec["frames"] == 4 and rec["lpips"] is None
        assert rec["psnr_per_frame"] == psnr[i].tolist()
        assert rec["psnr"] == pytest.approx(psnr[i].double().mean().item(), rel=1e-12)
        assert rec["ssim"] == pytest.approx(ssim[i].double().mean().item(), rel=1e-12)
    summary = m.compute()
    assert set(summary) == {"psnr", "ssim", "clips"} and summary["clips"] == 3
    assert summary["psnr"] == pytest.approx(psnr.double().mean().item(), rel=1e-12)
    assert m.all_records() == m.records == m.gathered_records

    with pytest.raises(ValueError, match="expected a list of 2 clip ids .* found 1 names"):
        m.update(real[:2], fake[:2], ["x"])
    m.reset()
    assert m.records == [] and m.compute()["clips"] == 0 and math.isnan(m.compute()["psnr"])


# Clips as split over ranks (uneven, and batched differently) versus one process in one batch.
_SPLITS = {0: [(0, 2), (2, 3)], 1: [(3, 5)]}
_CLIPS = dict(b=5, t=4, h=16, w=16)


def _metrics_args(detector: Path, sha: str) -> dict:
    return dict(lpips=True, fvd=True, detector_path=detector, detector_sha256=sha, fvd_frames=4)


def _clips() -> tuple[Tensor, Tensor, list[str]]:
    real = video(*_CLIPS.values(), seed=14)
    return real, degrade(real, seed=15), [f"v{i}" for i in range(_CLIPS["b"])]


def _rank_worker(rank: int, out: str, detector: str, sha: str) -> None:
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.distributed.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=2)
    try:
        real, fake, names = _clips()
        m = VideoMetrics(**_metrics_args(Path(detector), sha))
        for lo, hi in _SPLITS[rank]:
            m.update(real[lo:hi], fake[lo:hi], names[lo:hi])
        result = {"local": m.records, "summary": m.compute(), "gathered": m.gathered_records, "all": m.all_records()}
        Path(out, f"rank{rank}.pkl").write_bytes(pickle.dumps(result))
    finally:
        torch.distributed.destroy_process_group()


def test_video_metrics_two_processes_equal_one(
    torch_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    detector = tmp_path / "standin_i3d.pt"
    sha = save_detector(detector, frames=4)
    ctx = torch.multiprocessing.start_processes(
        _rank_worker, args=(str(tmp_path), str(detector), sha), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 180
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("distributed workers did not finish in 180 s")
    ranks = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(2)]

    # The workers found VGG16 in the hub cache; here it comes from vgg_path with an empty cache: same weights.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    real, fake, names = _clips()
    single = VideoMetrics(**_metrics_args(detector, sha), vgg_path=torch_home / "hub" / "checkpoints" / VGG16.filename)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers: CPU reductions split over threads round differently
    try:
        single.update(real, fake, names)
    finally:
        torch.set_num_threads(threads)
    want = single.compute()

    assert [len(r["local"]) for r in ranks] == [3, 2]
    assert ranks[0]["summary"] == ranks[1]["summary"]
    assert ranks[0]["gathered"] == ranks[1]["gathered"] == ranks[0]["all"] == ranks[1]["all"]
    got = ranks[0]["summary"]
    assert set(got) == {"psnr", "ssim", "lpips", "clips", "fvd"} and got["clips"] == 5
    # Per-clip values do not depend on batching, and clip means are summed exactly: bitwise equal. FVD's float64
    # sums are added in another order (per rank, then merged).
    assert {k: got[k] for k in ("psnr", "ssim", "lpips")} == {k: want[k] for k in ("psnr", "ssim", "lpips")}
    assert got["fvd"] == pytest.approx(want["fvd"], rel=1e-10)
    assert math.isfinite(got["fvd"]) and got["fvd"] > 0
    assert ranks[0]["gathered"] == single.records


def test_one_psnr_rule_everywhere() -> None:
    from vidtok.metrics import psnr, psnr_from_mse

    assert psnr_from_mse(1e-3) == pytest.approx(30.0) and psnr_from_mse(0.0) == PSNR_MAX_DB == psnr_from_mse(1e-12)
    with pytest.raises(ValueError, match=">= 0"):
        psnr_from_mse(-1.0)
    real = video(1, 3, 16, 16, seed=3)
    fake = degrade(real, seed=4).clamp(-1, 1)
    # a whole-tensor PSNR of one frame equals that frame's per-frame PSNR; a perfect copy is capped, not infinite
    assert psnr(real[:, :, :1], fake[:, :, :1]) == pytest.approx(psnr_per_frame(real, fake)[0, 0].item(), abs=1e-4)
    assert psnr(real, real) == PSNR_MAX_DB
