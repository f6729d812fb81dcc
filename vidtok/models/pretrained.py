"""``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` in the Hugging Face Hub's conventions, through
huggingface_hub's own ``PyTorchModelHubMixin``: a folder (or Hub repository) holds ``config.json`` (the
[`TokenizerConfig`][vidtok.config.TokenizerConfig]), ``model.safetensors`` (the weights, with the config in their
metadata too) and a generated model card ``README.md``. Loading takes what
[`vidtok.models.weights.locate_weights`][] takes (official names, folders, training checkpoints, single weight files,
Hub repository ids) and is strict and pickle-free.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

from huggingface_hub import ModelCard, PyTorchModelHubMixin

from ..config import TokenizerConfig
from ..defaults import protocol_clip_frames
from ..io.weight_files import META_SOURCE, save_tokenizer_safetensors
from .weights import RANDOM_SOURCE, WEIGHTS_NAME, locate_weights, read_weights

#: beside config.json: the statistics of the latents this tokenizer gave a dataset (encode.py's stats.json)
STATS_NAME = "latent_stats.json"


def _encode_config(config: TokenizerConfig) -> dict:
    return config.to_dict()


def _decode_config(data: Any) -> TokenizerConfig:
    return TokenizerConfig.from_any(data)


class PretrainedMixin(
    PyTorchModelHubMixin,
    library_name="vidtok",
    repo_url="https://github.com/microsoft/VidTok",
    paper_url="https://arxiv.org/abs/2412.13061",
    license="mit",
    tags=["video", "video-tokenizer", "vidtok", "autoencoder"],
    coders={TokenizerConfig: (_encode_config, _decode_config)},
):
    """Hub conventions for [`Tokenizer`][vidtok.Tokenizer] (whose ``__init__`` takes the one ``config`` and whose
    ``from_weights`` builds a loaded model)."""

    #: where the weights came from, in words; set when weights are loaded, written into model cards
    weights_source: str = RANDOM_SOURCE
    #: the file the weights were read from (None: random initialisation)
    weights_file: Optional[Path] = None
    #: statistics of its latents on a dataset (an ``encode.py`` stats.json, as a dict): ``save_pretrained`` writes
    #: them beside the config and into the model card, ``from_pretrained`` reads them back
    latent_stats: Optional[dict] = None

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: Union[str, os.PathLike],
        *,
        revision: Optional[str] = None,
        cache_dir: Optional[Union[str, Path]] = None,
        force_download: bool = False,
        token: Optional[Union[str, bool]] = None,
        local_files_only: bool = False,
        map_location: Any = "cpu",
        overrides: Sequence[str] = (),
        config: Optional[Union[TokenizerConfig, dict]] = None,
    ) -> Any:
        """A tokenizer from an official name (its published weights), a folder written by [`save_pretrained`][],
        a vidtok training checkpoint folder (``checkpoints/step_N/``), a weights file (``.safetensors`` / ``.ckpt``),
        or a Hub repository id holding a ``save_pretrained`` folder. ``revision``, ``local_files_only``,
        ``cache_dir``, ``force_download``, ``token`` work as in every Hub library; ``map_location`` is the device;
        ``overrides`` and ``config`` are [`vidtok.load_tokenizer`][]'s."""
        location = locate_weights(
            pretrained_model_name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            token=token,
            local_files_only=local_files_only,
        )
        if config is not None and not isinstance(config, TokenizerConfig):
            config = _decode_config(config)
        tok = cls.from_weights(read_weights(location, overrides=overrides, config=config), map_location)
        stats = Path(tok.weights_file).parent / STATS_NAME if tok.weights_file else None
        if stats is not None and stats.is_file():
            tok.latent_stats = json.loads(stats.read_text())
        return tok

    def _save_pretrained(self, save_directory: Path) -> None:
        save_tokenizer_safetensors(
            self.state_dict(), self.config, save_directory / WEIGHTS_NAME, {META_SOURCE: self.weights_source}
        )
        if self.latent_stats is not None:
            (save_directory / STATS_NAME).write_text(json.dumps(self.latent_stats, indent=1))

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """The model card of a saved tokenizer: what it is, the shapes it produces, where its weights came from."""
        return ModelCard(model_card(self, **kwargs))


def model_card(tok: Any, repo_id: Optional[str] = None, **_: Any) -> str:
    """Markdown (with the Hub's YAML header) describing ``tok``."""
    c = tok.config
    t, s, _s = c.factors
    params = sum(p.numel() for p in tok.parameters())
    latent = (
        f"FSQ, codebook {c.codebook_size:,} (levels {list(c.regularizer.levels)})"
        if c.is_discrete
        else (f"KL, {c.latent_channels} channels")
    )
    if c.causal:
        frames = f"1 + ceil((T - 1) / {t})"
        accepts = "any T >= 1 frames (17, 33, ... exactly as the original)"
    else:
        frames = f"T / {t}"
        accepts = f"T a multiple of {t}"
    title = c.name or "VidTok tokenizer"
    official = "published checkpoint" in tok.weights_source
    load = repo_id or "PATH_OR_REPO_ID"
    example_t = protocol_clip_frames(c.causal)
    latents = c.latent_frames(example_t)
    example = f"{example_t}x256x256 -> ({c.latent_channels}, {latents}, {256 // s}, {256 // s})"
    return f"""---
library_name: vidtok
license: mit
tags:
- video
- video-tokenizer
- vidtok
- autoencoder
---

# {title}

A VidTok video tokenizer ([paper](https://arxiv.org/abs/2412.13061), [original code](https://github.com/microsoft/VidTok)),
saved by [vidtok](https://github.com/microsoft/VidTok).

| | |
|---|---|
| version | {c.version}, {"causal" if c.causal else "non-causal"} |
| compression (time x height x width) | {t} x {s} x {s} |
| latent | {latent} |
| input | video (B, 3, T, H, W) in [-1, 1]; {accepts}; H and W multiples of {s} |
| latent shape | (B, {c.latent_channels}, {frames}, H / {s}, W / {s}), e.g. {example} |
| parameters | {params:,} ({params / 1e6:.1f}M) |
| base width | {c.model.ch} |

## Weights

{tok.weights_source}.
{stats_section(tok.latent_stats)}
## Licence

MIT. The VidTok architecture{" and the official weights" if official else ""} are by Microsoft (MIT licence,
https://github.com/microsoft/VidTok); vidtok is MIT-licensed too.

## Use

```python
from vidtok import Tokenizer

tok = Tokenizer.from_pretrained("{load}")
z = tok.encode(video)  # video: (B, 3, T, H, W) in [-1, 1]
video_hat = tok.decode(z)
```
"""


def stats_section(stats: Optional[dict]) -> str:
    """The model card's table of the latent statistics it carries (empty without)."""
    if not stats:
        return ""
    rows = [f"| {k} | {v} |" for k, v in _stats_rows(stats)]
    return (
        f"\n## Latent statistics\n\nMeasured by vidtok's encode.py on {stats.get('videos', '?')} videos "
        f"({stats.get('samples', '?')} samples); `{STATS_NAME}` beside the config holds them all.\n\n| | |\n|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )


def _stats_rows(stats: dict) -> list[tuple[str, str]]:
    def numbers(values: Sequence[float]) -> str:
        return ", ".join(f"{v:.4g}" for v in values)

    if stats.get("kind") == "indices":
        return [
            ("codes used", f"{stats['codes_used']:,} of {stats['codebook_size']:,} ({stats['usage']:.1%})"),
            ("perplexity", f"{stats['perplexity']:.1f}"),
            ("token change rate", f"{stats['change_rate']:.3f}" if stats.get("change_rate") is not None else "-"),
        ]
    factors = stats.get("factors", {})
    return [
        ("mean per channel", numbers(stats.get("mean", []))),
        ("std per channel", numbers(stats.get("std", []))),
        ("scaling_factor (1 / global std)", f"{factors.get('scaling_factor', float('nan')):.6g}"),
        ("shift_factor (global mean)", f"{factors.get('shift_factor', float('nan')):.6g}"),
    ]
