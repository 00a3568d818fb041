"""Training: the loop (one function), its checkpoints, the generator EMA and the report table."""

from ganforge.train.history import history_tsv
from ganforge.train.loop import Stopped, TrainResult, train, trajectory_config
from ganforge.train.recipe import train_kwargs

__all__ = ["Stopped", "TrainResult", "history_tsv", "train", "train_kwargs", "trajectory_config"]
