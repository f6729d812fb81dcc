"""Train or fine-tune a VidTok tokenizer: the Hydra app behind ``python -m vidtok.train`` and the checkout's
``train.py`` (configs: the package's ``conf/``, ``train.yaml``).

python -m vidtok.train experiment=demo                      # small tokenizer on the bundled clips (CPU)
accelerate launch -m vidtok.train regularizer=fsq compression=488 data.path=/videos val_data.path=/val
python -m vidtok.train -m regularizer=kl,fsq compression=488,444 ...   # a local sweep
"""

from .hydra_app import hydra_app
from .training.run import train_from_hydra

main = hydra_app("train")(train_from_hydra)
"""The Hydra app of ``conf/train.yaml``: runs the composed training job; returns the last total loss
(what a sweeper minimises)."""

if __name__ == "__main__":
    main()
