"""Evaluate a tokenizer by the VidTok paper's protocol: the Hydra app behind ``python -m vidtok.evaluate`` and the
checkout's ``evaluate.py`` (configs: the package's ``conf/``, ``eval.yaml``; under ``accelerate launch`` the videos
are split between the processes).

python -m vidtok.evaluate ckpt=vidtok_kl_causal_488_4chn.ckpt data.dir=MCL-JCV/              # 17x256x256 clips
python -m vidtok.evaluate tokenizer=vidtok_kl_causal_488_4chn_v1_1 data.dir=MCL-JCV/ mode=whole   # long videos
accelerate launch -m vidtok.evaluate ckpt=... data.dir=... metrics.fvd=true output.reconstructions=true
"""

from .evaluation.entry import evaluate_from_hydra
from .hydra_app import hydra_app

main = hydra_app("eval")(evaluate_from_hydra)
"""The Hydra app of ``conf/eval.yaml``: runs the composed evaluation; returns the mean PSNR."""

if __name__ == "__main__":
    main()
