"""Train or fine-tune a VidTok tokenizer: the Hydra app behind ``python -m vidtok.train`` and the checkout's
``train.py`` (configs: the package's ``conf/``, ``train.yaml``).

python -m vidtok.train experiment=demo                      # small tokenizer on the bundled clips (CPU)
accelerate launch -m vidtok.train regularizer=fsq compression=488 data.path=/videos val_data.path=/val
python -m vidtok.train -m regularizer=kl,fsq compression=488,444 ...   # a local sweep
"""

from omegaconf import DictConfig

from .hydra_app import hydra_app
from .training.run import train_from_hydra


@hydra_app("train")
def main(cfg: DictConfig) -> float:
    """Run the composed training job; returns the last total loss (what a sweeper minimises)."""
    return train_from_hydra(cfg)


if __name__ == "__main__":
    main()
