"""Encode a dataset into latent / FSQ index shards (Hydra app; under `accelerate launch` the videos are split).

python encode.py tokenizer=vidtok_kl_causal_488_4chn_v1_1 data.dir=videos/ output.dir=latents/
python encode.py tokenizer=vidtok_fsq_causal_488_32768_v1_1 data.dir=videos/ output.dir=tokens/ output.indices=true
accelerate launch --num_processes 8 encode.py tokenizer=... data.dir='shards/train-{000..099}.tar' output.dir=...
"""

from omegaconf import DictConfig

from vidtok.encoding.entry import encode_from_hydra
from vidtok.hydra_app import hydra_app


@hydra_app("encode")
def main(cfg: DictConfig) -> int:
    return encode_from_hydra(cfg)


if __name__ == "__main__":
    main()
