"""Run the original microsoft/VidTok implementation from a checkout, for comparisons and benchmarks.

Nothing of the original is vendored: pass the path of a checkout (and install its own dependencies:
einops, beartype, rich, lightning). Its package is imported under the name ``vidtok_original``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import torch
from omegaconf import OmegaConf

#: The name the original's package is imported under beside ours (both are ``vidtok``).
PACKAGE = "vidtok_original"


def import_original(root: str | os.PathLike, name: str = PACKAGE) -> ModuleType:
    """The original's ``vidtok`` package from the checkout at ``root``, imported under ``name``; its modules are
    then ``<name>.modules.losses`` and so on. ``name="vidtok"`` serves a fresh interpreter running the original's
    own code, which imports itself by that name. Importing the same checkout again returns the same package."""
    pkg_dir = Path(root) / "vidtok"
    if not (pkg_dir / "modules").is_dir():
        raise FileNotFoundError(f"{root} is not a microsoft/VidTok checkout: expected a folder {pkg_dir / 'modules'}")
    bound = sys.modules.get(name)
    if bound is not None:
        found = list(getattr(bound, "__path__", []))
        if found != [str(pkg_dir)]:
            raise ImportError(f"{name} is already imported from {found or bound}, not from {pkg_dir}")
        return bound
    init = pkg_dir / "__init__.py"  # the original's package has none today
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(pkg_dir)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    if init.exists():
        spec.loader.exec_module(module)
    return module


def original_module(root: str | os.PathLike, dotted: str) -> ModuleType:
    """One module of the original's package, by its path inside it (``"modules.losses"``)."""
    return importlib.import_module(f"{import_original(root).__name__}.{dotted}")


def instantiate(target: str, params: dict):
    """The original's ``instantiate_from_config``: ``target`` names a class of its ``vidtok`` package."""
    module_name, cls_name = target.rsplit(".", 1)
    module = importlib.import_module(module_name.replace("vidtok.", f"{PACKAGE}.", 1))
    return getattr(module, cls_name)(**params)


def config_path(root: Path, name: str) -> Path:
    sub = "vidtok_v1_1/" if name.endswith("_v1_1") else ""
    return root / "configs" / f"{sub}{name}.yaml"


class Original(torch.nn.Module):
    def __init__(self, root: Path, name: str, ch: int):
        super().__init__()
        import_original(root)
        cfg = OmegaConf.load(config_path(root, name))
        OmegaConf.update(cfg, "model.params.encoder_config.params.ch", ch)
        params = OmegaConf.to_container(cfg.model.params, resolve=True)
        self.encoder = instantiate(params["encoder_config"]["target"], params["encoder_config"]["params"])
        self.decoder = instantiate(params["decoder_config"]["target"], params["decoder_config"]["params"])
        reg = params["regularizer_config"]
        self.regularization = instantiate(reg["target"], reg.get("params", {}))
        self.is_v1_1 = "v1_1" in params["encoder_config"]["target"]
        self.factor = params["encoder_config"]["params"].get("time_downsample_factor", 4)
        self.is_fsq = "FSQ" in reg["target"]

    def _first_chunk(self, module: torch.nn.Module) -> None:
        for m in module.modules():
            if hasattr(m, "causal_cache"):
                m.causal_cache = None
            if hasattr(m, "is_first_chunk"):
                m.is_first_chunk = True

    def encode(self, x):
        self._first_chunk(self.encoder)
        moments = self.encoder(x)
        if self.is_fsq:
            z, log = self.regularization(moments)
            return z, log["indices"]
        return moments.chunk(2, dim=1)[0], None

    def decode(self, z):
        self._first_chunk(self.decoder)
        x = self.decoder(z)
        if self.is_v1_1:
            x = x[:, :, self.factor - 1 :]  # v1.1 returns the f-1 padding frames too
        return x

    def encode_chunked(self, x, chunk_frames: int):
        """The original v1.1 chunk schedule: the first frame alone, then ``chunk_frames`` at a time."""
        moments = self._chunked(self.encoder, x, chunk_frames)
        return (self.regularization(moments)[0] if self.is_fsq else moments.chunk(2, dim=1)[0]), None

    def decode_chunked(self, z, chunk_latents: int):
        """The original v1.1 chunk schedule: the first latent alone, then ``chunk_latents`` at a time."""
        x = self._chunked(self.decoder, z, chunk_latents)
        return x[:, :, self.factor - 1 :] if self.is_v1_1 else x

    def _chunked(self, module, x, chunk: int):
        """``module`` over the first frame alone, then ``chunk`` frames at a time, with its causal cache."""
        t = x.shape[2]
        bounds = [(0, 1)] + [(s, min(s + chunk, t)) for s in range(1, t, chunk)]
        self._first_chunk(module)
        out = []
        for i, (s, e) in enumerate(bounds):
            self._set_first(module, i == 0)
            out.append(module(x[:, :, s:e]))
        return torch.cat(out, dim=2)

    @staticmethod
    def _set_first(module: torch.nn.Module, first: bool) -> None:
        for m in module.modules():
            if hasattr(m, "is_first_chunk"):
                m.is_first_chunk = first
