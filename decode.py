"""Decode many latents into videos: the checkout's entry to ``python -m vidtok.decode`` (the same Hydra app and
configs).

python decode.py data.dir=latents/ output.dir=decoded/
python decode.py tokenizer=vidtok_kl_causal_488_4chn_v1_1 data.dir=generated/ stats=latents/stats.json output.dir=out/
accelerate launch --num_processes 8 decode.py data.dir=latents/ output.dir=decoded/
"""

from vidtok.decode import main

if __name__ == "__main__":
    main()
