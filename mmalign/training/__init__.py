"""Training LoginMEA: the configuration, the loop, pseudo-labelling, selection, the ensemble, runs.

| module | holds |
| --- | --- |
| ``config`` | :class:`TrainConfig`, the one typed, checked configuration (sections beside their code) |
| ``splits`` | the train/valid/test pairs of a run, read and kept in its folder |
| ``inputs`` | the graph and modality features every model of a run reads, built once |
| ``loop`` | :class:`Trainer`: one model's epochs, steps, validation and checkpoints |
| ``pseudo`` | iterative training's pseudo pairs (its own state, checkpointed) |
| ``selection`` | validation-based model selection and early stopping |
| ``checkpoint`` | saving and loading a member's whole training state |
| ``ensemble`` | a run's members (one model = an ensemble of one) and the run's summary |
| ``runs`` | :func:`train` a new run, :func:`resume` an interrupted one |
"""

from mmalign.training.config import TrainConfig, load_run_config
from mmalign.training.ensemble import MemberResult, TrainResult
from mmalign.training.runs import resume, train

__all__ = ["MemberResult", "TrainConfig", "TrainResult", "load_run_config", "resume", "train"]
