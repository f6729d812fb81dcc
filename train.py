"""Train or fine-tune a VidTok tokenizer (Hydra app; run it under `accelerate launch` for several processes).

python train.py experiment=demo                       # small tokenizer on the bundled clips (CPU)
accelerate launch train.py regularizer=fsq compression=488 data.path=/videos val_data.path=/val
python train.py -m regularizer=kl,fsq compression=488,444 ...   # a local sweep
"""

from omegaconf import DictConfig

from vidtok.hydra_app import hydra_app
from vidtok.training.run import train_from_hydra


@hydra_app("train")
def main(cfg: DictConfig) -> float:
    return train_from_hydra(cfg, script=__file__)


if __name__ == "__main__":
    main()
