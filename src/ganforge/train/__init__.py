"""Training: the loop (one function), its checkpoints and the generator EMA."""

from ganforge.train.loop import TrainResult, train, trajectory_config

__all__ = ["TrainResult", "train", "trajectory_config"]
