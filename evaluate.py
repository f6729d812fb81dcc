"""Evaluate a tokenizer by the VidTok paper's protocol (Hydra app; under `accelerate launch` the videos are split).

python evaluate.py ckpt=vidtok_kl_causal_488_4chn.ckpt data.dir=MCL-JCV/              # 17x256x256 clips, 30 fps
python evaluate.py ckpt=vidtok_kl_causal_488_4chn_v1_1.ckpt data.dir=MCL-JCV/ mode=whole   # v1.1 long videos
accelerate launch evaluate.py ckpt=... data.dir=... metrics.fvd=true output.reconstructions=true
"""

from omegaconf import DictConfig

from vidtok.evaluation import evaluate_from_hydra
from vidtok.hydra_app import hydra_app


@hydra_app("eval")
def main(cfg: DictConfig) -> float:
    return evaluate_from_hydra(cfg)


if __name__ == "__main__":
    main()
