"""Training: the loop (one function), its checkpoints, the generator EMA and the report table."""

from ganforge.train.history import history_tsv
from ganforge.train.loop import TrainResult, train, trajectory_config

__all__ = ["TrainResult", "history_tsv", "train", "trajectory_config"]
