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
from pathlib import Path

import torch
from original import Original

import vidtok
from vidtok.io.weight_files import check_state_dict

LATENT_TOL = 1e-4
REC_MAX_TOL = 5e-4
REC_MEAN_TOL = 1e-5


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
