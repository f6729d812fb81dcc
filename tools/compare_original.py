"""Compare vidtok with the original microsoft/VidTok implementation on every official config.

Needs a checkout of https://github.com/microsoft/VidTok (never vendored here) and the original's
own dependencies (einops, beartype, rich, lightning)::

    python tools/compare_original.py --original /path/to/VidTok [--ch 4] [--hw 32] [--names ...]

For each config it builds the original encoder/decoder/regularizer from the official YAML at width
``--ch``, perturbs every parameter (seed 0, N(0, 0.02) noise, as the shared fixtures do), loads the
same weights into vidtok and compares latents, reconstructions and FSQ indices on seeded inputs of
several lengths (T = 1 + k*f for causal models, where both implementations agree on the frame
layout, multiples of f for non-causal ones). Prints one row per config and case; exits 1 on a failure.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

import vidtok
from vidtok.checkpoint import check_state_dict

LATENT_TOL = 1e-4
REC_MAX_TOL = 5e-4
REC_MEAN_TOL = 1e-5


def import_original(root: Path) -> str:
    """Import the original ``vidtok`` package under the name ``vidtok_original``."""
    pkg_dir = root / "vidtok"
    spec = importlib.util.spec_from_file_location(
        "vidtok_original", pkg_dir / "__init__.py", submodule_search_locations=[str(pkg_dir)]
    )
    if spec is None:
        raise SystemExit(f"{root} does not look like a VidTok checkout (no vidtok/ package)")
    module = importlib.util.module_from_spec(spec)
    sys.modules["vidtok_original"] = module
    if (pkg_dir / "__init__.py").exists():
        spec.loader.exec_module(module)
    return "vidtok_original"


def instantiate(target: str, params: dict):
    module_name, cls_name = target.rsplit(".", 1)
    module = importlib.import_module(module_name.replace("vidtok.", "vidtok_original.", 1))
    return getattr(module, cls_name)(**params)


def config_path(root: Path, name: str) -> Path:
    sub = "vidtok_v1_1/" if name.endswith("_v1_1") else ""
    return root / "configs" / f"{sub}{name}.yaml"


class Original(torch.nn.Module):
    def __init__(self, root: Path, name: str, ch: int):
        super().__init__()
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


def perturbed_state_dict(model: torch.nn.Module) -> dict:
    torch.manual_seed(0)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn_like(tensor) * 0.02)
    return {k: v.clone() for k, v in model.state_dict().items()}


def compare(root: Path, name: str, ch: int, hw: int) -> list[tuple[str, str, float, float, bool]]:
    torch.manual_seed(0)
    orig = Original(root, name, ch).eval()
    state_dict = perturbed_state_dict(orig)
    config = vidtok.compose_tokenizer_config(name, [f"model.ch={ch}"])
    ours = vidtok.Tokenizer(config).eval()
    check_state_dict(ours, state_dict, source=f"original {name}")
    ours.load_state_dict(state_dict)
    f = config.temporal_factor
    lengths = [1, 1 + f, 17 if f <= 8 else 1 + 2 * f] if config.causal else [f, 16]
    rows = []
    for frames in dict.fromkeys(lengths):
        x = torch.rand((1, 3, frames, hw, hw), generator=torch.Generator().manual_seed(0)) * 2 - 1
        with torch.no_grad():
            z_ref, idx_ref = orig.encode(x)
            x_ref = orig.decode(z_ref)
            z = ours.encode(x)
            x_rec = ours.decode(z_ref)
            zd = (z - z_ref).abs().max().item()
            rd = (x_rec - x_ref).abs()
            ok = zd <= LATENT_TOL and rd.max().item() <= REC_MAX_TOL and rd.mean().item() <= REC_MEAN_TOL
            ok = ok and x_rec.shape == x_ref.shape
            detail = ""
            if idx_ref is not None:
                same = torch.equal(ours.encode_indices(x), idx_ref.long())
                from_idx = (ours.decode_indices(idx_ref.long()) - x_rec).abs().max().item()
                ok = ok and same and from_idx == 0.0
                detail = f" idx {'==' if same else '!='}"
        rows.append((name, f"T={frames}{detail}", zd, rd.max().item(), ok))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--original", type=Path, required=True, help="checkout of microsoft/VidTok")
    parser.add_argument("--ch", type=int, default=4, help="base width (model.ch) to build at")
    parser.add_argument("--hw", type=int, default=32, help="frame height and width")
    parser.add_argument("--names", nargs="*", default=None, help="official names (default: all 23)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    import_original(args.original)
    names = args.names or vidtok.official_names()
    failures = 0
    print(f"{'config':40s} {'case':14s} {'latent max':>11s} {'recon max':>11s}  result")
    for name in names:
        for row_name, case, zd, rd, ok in compare(args.original, name, args.ch, args.hw):
            failures += not ok
            print(f"{row_name:40s} {case:14s} {zd:11.2e} {rd:11.2e}  {'ok' if ok else 'FAIL'}")
    print(f"\n{len(names)} configs, {failures} failing cases")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
