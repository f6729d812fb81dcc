"""Evaluate a tokenizer by the VidTok paper's protocol: the checkout's entry to ``python -m vidtok.evaluate``
(the same Hydra app and configs).

python evaluate.py ckpt=vidtok_kl_causal_488_4chn.ckpt data.dir=MCL-JCV/              # 17x256x256 clips, 30 fps
python evaluate.py ckpt=vidtok_kl_causal_488_4chn_v1_1.ckpt data.dir=MCL-JCV/ mode=whole   # v1.1 long videos
accelerate launch evaluate.py ckpt=... data.dir=... metrics.fvd=true output.reconstructions=true
"""

from vidtok.evaluate import main

if __name__ == "__main__":
    main()
