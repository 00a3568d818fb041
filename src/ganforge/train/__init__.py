"""Training: the engine (one function that steps a task's phases), its checkpoints, the EMA, the report
table, and the train stage's work (run.py: validate, build, run)."""

from ganforge.train.engine import Phase, Stopped, Task, TrainResult, train
from ganforge.train.history import history_tsv
from ganforge.train.run import build, trajectory_config, validate

__all__ = ["Phase", "Stopped", "Task", "TrainResult", "build", "history_tsv", "train", "trajectory_config",
           "validate"]
