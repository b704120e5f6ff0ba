"""Training GAP networks from image-level labels (``camloc train``).

>>> from camloc.train import TrainConfig, train  # doctest: +SKIP
>>> cfg = TrainConfig(dataset="data/synth", arch="tiny-cnn", epochs=5, out="runs/tiny")
>>> result = train(cfg)  # doctest: +SKIP
"""

from camloc.train.config import TrainConfig
from camloc.train.trainer import (LOG_COLUMNS, TrainReporter, TrainResult,
                                  open_train_val, train)

__all__ = ["LOG_COLUMNS", "TrainConfig", "TrainReporter", "TrainResult",
           "open_train_val", "train"]
