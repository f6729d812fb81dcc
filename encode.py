"""Encode a dataset into latent / FSQ index shards: the checkout's entry to ``python -m vidtok.encode``
(the same Hydra app and configs).

python encode.py tokenizer=vidtok_kl_causal_488_4chn_v1_1 data.dir=videos/ output.dir=latents/
python encode.py tokenizer=vidtok_fsq_causal_488_32768_v1_1 data.dir=videos/ output.dir=tokens/ output.indices=true
accelerate launch --num_processes 8 encode.py tokenizer=... data.dir='shards/train-{000..099}.tar' output.dir=...
"""

from vidtok.encode import main

if __name__ == "__main__":
    main()
