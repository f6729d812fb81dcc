"""Training: run configs, the Accelerate loop, checkpoints and resume, logging.

>>> from vidtok.training import compose_train_config, load_run_config, train
>>> run = load_run_config(compose_train_config(["experiment=debug", "data.path=videos/", "run_dir=runs/x"]))
>>> train(run)
"""

from ..errors import TrainingError
from .checkpoints import CheckpointDir
from .config import RunConfig, check_clip_fits, load_run_config
from .run import compose_train_config, train
from .trainer import Trainer

__all__ = [
    "CheckpointDir",
    "RunConfig",
    "Trainer",
    "TrainingError",
    "check_clip_fits",
    "compose_train_config",
    "load_run_config",
    "train",
]
