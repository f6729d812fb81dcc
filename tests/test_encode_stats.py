"""encode.py's statistics of what it writes (stats.json): exact against the shards' own tensors, the same whatever
the shards hold, and the same after a kill and a restart."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from test_encode import FSQ, KL_V11, _config, _samples, videos  # noqa: F401 (videos: the module's fixture)

from vidtok.encoding import encode_dataset
from vidtok.encoding.stats import channel_moments, merge_moments
from vidtok.metrics.codes import CodeCounts, code_stats


def _stats(out: Path) -> dict:
    return json.loads((out / "stats.json").read_text())


def test_kl_statistics_are_those_of_the_written_latents(weights, videos, tmp_path) -> None:  # noqa: F811
    encode_dataset(_config(weights, videos, tmp_path / "out", output={"max_count": 2}))
    samples = _samples(tmp_path / "out")
    latents = [s["tokens"].data.double() for s in samples.values()]
    values = torch.cat([z.transpose(0, 1).reshape(z.shape[1], -1) for z in latents], dim=1)
    first = torch.cat([z[:, :, :1].transpose(0, 1).reshape(z.shape[1], -1) for z in latents], dim=1)
    stats = _stats(tmp_path / "out")
    assert stats["kind"] == "latents" and stats["samples"] == len(samples) and stats["videos"] == 5
    assert stats["count"] == values.shape[1]
    torch.testing.assert_close(torch.tensor(stats["mean"], dtype=torch.float64), values.mean(1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        torch.tensor(stats["std"], dtype=torch.float64), values.std(1, correction=0), rtol=1e-10, atol=1e-12
    )
    assert stats["min"] == values.amin(1).tolist() and stats["max"] == values.amax(1).tolist()
    assert stats["first_frame"]["count"] == first.shape[1]
    torch.testing.assert_close(torch.tensor(stats["first_frame"]["mean"], dtype=torch.float64), first.mean(1))
    overall = values.reshape(-1)
    assert stats["global"]["mean"] == pytest.approx(overall.mean().item(), rel=1e-12)
    assert stats["global"]["std"] == pytest.approx(overall.std(correction=0).item(), rel=1e-10)
    factors = stats["factors"]
    assert factors["scaling_factor"] == pytest.approx(1 / stats["global"]["std"])
    assert factors["shift_factor"] == stats["global"]["mean"] and factors["latents_std"] == stats["std"]


def test_the_same_statistics_whatever_the_shards_hold(weights, videos, tmp_path) -> None:  # noqa: F811
    """Moments are merged in video order with correctly rounded sums: shards of 1 sample or of 1,000 give the
    same file, byte for byte."""
    encode_dataset(_config(weights, videos, tmp_path / "a", output={"max_count": 1}))
    encode_dataset(_config(weights, videos, tmp_path / "b"))
    assert (tmp_path / "a" / "stats.json").read_bytes() == (tmp_path / "b" / "stats.json").read_bytes()


def test_merging_is_independent_of_grouping() -> None:
    gen = torch.Generator().manual_seed(0)
    parts = [torch.randn(1, 4, t, 3, 5, generator=gen) * (i + 1) + i for i, t in enumerate((1, 3, 2, 5, 4))]
    one = merge_moments([channel_moments(parts)])
    split = merge_moments([channel_moments(parts[:2]), channel_moments(parts[2:3]), channel_moments(parts[3:])])
    singles = merge_moments([channel_moments([p]) for p in reversed(parts)])
    for key in ("count", "min", "max"):
        assert one[key] == split[key] == singles[key]
    for key in ("mean", "std"):
        for a, b, c in zip(one[key], split[key], singles[key], strict=True):
            assert math.isclose(a, b, rel_tol=1e-14) and math.isclose(a, c, rel_tol=1e-14)


def test_fsq_statistics_count_every_code(weights, videos, tmp_path) -> None:  # noqa: F811
    out = tmp_path / "out"
    encode_dataset(_config(weights, videos, out, name=FSQ, output={"indices": True, "max_count": 3}))
    indices = [s["tokens"].data for s in _samples(out).values()]
    stats = _stats(out)
    flat = torch.cat([i.reshape(-1) for i in indices]).long()
    counts = torch.bincount(flat, minlength=4096)
    p = counts[counts > 0].double() / flat.numel()
    assert stats["kind"] == "indices" and stats["codebook_size"] == 4096 and stats["tokens"] == flat.numel()
    assert stats["codes_used"] == int((counts > 0).sum()) and stats["usage"] == stats["codes_used"] / 4096
    assert stats["perplexity"] == pytest.approx(math.exp(-(p * p.log()).sum().item()), rel=1e-12)
    changes = sum(int((i[:, 1:] != i[:, :-1]).sum()) for i in indices)
    pairs = sum(i[:, 1:].numel() for i in indices)
    assert stats["change_rate"] == pytest.approx(changes / pairs)
    levels = stats["levels"]
    assert [len(u) for u in stats["level_usage"]] == levels
    assert all(sum(u) == pytest.approx(1.0) for u in stats["level_usage"])
    first_digit = torch.bincount(flat % levels[0], minlength=levels[0]).double() / flat.numel()
    assert stats["level_usage"][0] == pytest.approx(first_digit.tolist())


def test_code_stats_of_a_262144_codebook() -> None:
    counts = CodeCounts(262144)
    counts.add(torch.tensor([[[[0, 262143], [5, 5]], [[0, 1], [5, 6]]]]))
    stats = code_stats([counts], [8, 8, 8, 8, 8, 8])
    assert stats["tokens"] == 8 and stats["codes_used"] == 5 and stats["change_rate"] == 2 / 4
    assert stats["level_usage"][0][7] == pytest.approx(1 / 8)  # 262143: every digit 7


def test_latent_dataset_normalizes_with_the_folders_statistics(weights, videos, tmp_path) -> None:  # noqa: F811
    from vidtok.data import LatentDataset, LatentStats
    from vidtok.errors import DataSourceError

    out = tmp_path / "out"
    encode_dataset(_config(weights, videos, out))
    stats = LatentStats.load(out)
    raw = {s["key"]: s["latents"] for s in LatentDataset(out)}
    normed = {s["key"]: s["latents"] for s in LatentDataset(out, normalize=True)}
    values = torch.cat([z.transpose(0, 1).reshape(z.shape[1], -1) for z in normed.values()], dim=1).double()
    torch.testing.assert_close(values.mean(1), torch.zeros(len(stats.mean), dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        values.std(1, correction=0), torch.ones(len(stats.mean), dtype=torch.float64), atol=1e-5, rtol=0
    )
    for key, z in normed.items():
        torch.testing.assert_close(stats.denormalize(z), raw[key], atol=1e-5, rtol=1e-5)
    flat = torch.cat([s["latents"].reshape(-1) for s in LatentDataset(out, normalize="global")]).double()
    assert abs(flat.mean().item()) < 1e-5 and abs(flat.std(correction=0).item() - 1) < 1e-5
    with pytest.raises(DataSourceError, match="output folder"):
        LatentDataset(str(out / "part-*.tar"), normalize=True)
    fsq = tmp_path / "fsq"
    encode_dataset(_config(weights, videos, fsq, name=FSQ, output={"indices": True}))
    with pytest.raises(DataSourceError, match="FSQ indices"):
        LatentStats.load(fsq)


def test_posterior_runs_store_the_log_variance_and_datasets_draw_from_it(weights, videos, tmp_path) -> None:  # noqa: F811
    from vidtok.data import LatentDataset
    from vidtok.errors import ConfigError, DataSourceError

    plain, post = tmp_path / "plain", tmp_path / "post"
    encode_dataset(_config(weights, videos, plain))
    encode_dataset(_config(weights, videos, post, output={"posterior": True}))
    means = {k: s["tokens"] for k, s in _samples(post).items()}
    for key, sample in _samples(plain).items():  # the stored mean is what a plain run stores
        assert torch.equal(means[key].data, sample["tokens"].data)
        assert means[key].logvar is not None and means[key].logvar.shape == means[key].data.shape
    assert (plain / "stats.json").read_bytes() != b"" and _stats(post)["mean"] == _stats(plain)["mean"]

    def draws(epoch: int, workers: int = 0) -> dict[str, torch.Tensor]:
        dataset = LatentDataset(post, sample=True, seed=3)
        dataset.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers)
        return {s["key"]: s["latents"] for s in loader}

    first, again, later = draws(0), draws(0, workers=2), draws(1)
    assert sorted(first) == sorted(again) == sorted(means)
    assert all(torch.equal(first[k], again[k]) for k in first)  # whichever worker reads a sample
    assert not any(torch.equal(first[k], later[k]) for k in first)  # a new draw each epoch
    eps = torch.cat([((first[k] - t.data) / torch.exp(0.5 * t.logvar)).reshape(-1) for k, t in means.items()])
    assert abs(eps.mean().item()) < 0.1 and abs(eps.std().item() - 1) < 0.1, (eps.mean(), eps.std())
    with pytest.raises(DataSourceError, match="output.posterior=true"):
        next(iter(LatentDataset(plain, sample=True)))
    whole = tmp_path / "whole"  # one causal stream per video: its moments, split when the video ends
    encode_dataset(_config(weights, videos, whole, mode="whole", output={"posterior": True}))
    plain_whole = tmp_path / "plain_whole"
    encode_dataset(_config(weights, videos, plain_whole, mode="whole"))
    for key, sample in _samples(plain_whole).items():
        tokens = _samples(whole)[key]["tokens"]
        assert torch.equal(tokens.data, sample["tokens"].data) and tokens.logvar.shape == tokens.data.shape
    with pytest.raises(ConfigError, match="FSQ model"):
        encode_dataset(_config(weights, videos, tmp_path / "fsq", name=FSQ, output={"posterior": True}))


def test_stats_only_commits_the_statistics_of_a_sample_without_shards(weights, videos, tmp_path) -> None:  # noqa: F811
    full, only = tmp_path / "full", tmp_path / "only"
    encode_dataset(_config(weights, videos, full, data={"dir": str(videos), "limit": 3}))
    encode_dataset(_config(weights, videos, only, data={"dir": str(videos), "limit": 3}, output={"stats_only": True}))
    assert not list(only.glob("part-*.tar")) and list((only / "index").glob("part-*.json"))
    assert (only / "stats.json").read_bytes() == (full / "stats.json").read_bytes()
    assert _stats(only)["videos"] < 5  # the first 3 listed, of which the readable ones


def test_a_saved_tokenizer_and_its_diffusers_export_carry_the_statistics(weights, videos, tmp_path) -> None:  # noqa: F811
    import vidtok
    from vidtok.cli import main as vidtok_cli

    out = tmp_path / "latents"
    encode_dataset(_config(weights, videos, out))
    stats = _stats(out)
    tok = vidtok.load_tokenizer(ckpt=weights[KL_V11])
    tok.latent_stats = stats
    tok.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "latent_stats.json").read_text()) == stats
    card = (tmp_path / "saved" / "README.md").read_text()
    assert "## Latent statistics" in card and f"{stats['factors']['scaling_factor']:.6g}" in card
    assert vidtok.Tokenizer.from_pretrained(tmp_path / "saved").latent_stats == stats
    assert vidtok.Tokenizer.from_pretrained(weights[KL_V11]).latent_stats is None
    pytest.importorskip("diffusers")
    args = [
        "export-diffusers",
        "--ckpt",
        str(weights[KL_V11]),
        str(tmp_path / "diff"),
        "--stats",
        str(out / "stats.json"),
    ]
    assert vidtok_cli(args) == 0
    assert json.loads((tmp_path / "diff" / "latent_stats.json").read_text()) == stats


def test_the_model_card_table_of_fsq_statistics() -> None:
    from vidtok.models.pretrained import stats_section

    counts = CodeCounts(4096)
    counts.add(torch.tensor([[[[0, 1], [2, 2]], [[0, 1], [3, 2]]]]))
    table = stats_section(code_stats([counts], [8, 8, 8, 8]))
    assert "| codes used | 4 of 4,096 (0.1%) |" in table and "| perplexity |" in table and "0.250" in table
    assert stats_section(None) == ""
