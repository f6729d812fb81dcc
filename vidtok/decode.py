"""Decode many latents into videos: the Hydra app behind ``python -m vidtok.decode`` and the checkout's ``decode.py``
(configs: the package's ``conf/``, ``decode.yaml``; under ``accelerate launch`` the inputs are split between the
processes).

python -m vidtok.decode data.dir=latents/ output.dir=decoded/
python -m vidtok.decode tokenizer=vidtok_kl_causal_488_4chn_v1_1 data.dir=gen/ stats=latents/stats.json output.dir=out/
accelerate launch --num_processes 8 -m vidtok.decode data.dir=latents/ output.dir=decoded/
"""

from .decoding.entry import decode_from_hydra
from .hydra_app import hydra_app

main = hydra_app("decode")(decode_from_hydra)
"""The Hydra app of ``conf/decode.yaml``: runs the composed decoding job; returns the number of videos written."""

if __name__ == "__main__":
    main()
