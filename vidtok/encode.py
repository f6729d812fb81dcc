"""Encode a dataset into latent / FSQ index shards: the Hydra app behind ``python -m vidtok.encode`` and the
checkout's ``encode.py`` (configs: the package's ``conf/``, ``encode.yaml``; under ``accelerate launch`` the videos
are split between the processes).

python -m vidtok.encode tokenizer=vidtok_kl_causal_488_4chn_v1_1 data.dir=videos/ output.dir=latents/
python -m vidtok.encode tokenizer=vidtok_fsq_causal_488_32768_v1_1 data.dir=videos/ output.dir=t/ output.indices=true
accelerate launch --num_processes 8 -m vidtok.encode tokenizer=... data.dir='shards/train-{000..099}.tar' output.dir=...
"""

from .encoding.entry import encode_from_hydra
from .hydra_app import hydra_app

main = hydra_app("encode")(encode_from_hydra)
"""The Hydra app of ``conf/encode.yaml``: runs the composed encoding job; returns the number of samples
in the output."""

if __name__ == "__main__":
    main()
