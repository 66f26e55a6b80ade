"""The split policy, in one place: which images may steer a decision and which only report.

The single-task nets saw the whole training split, so accuracy measured there flatters them.
The held-out split is therefore cut in two halves that never overlap:

- **validation** (the first ``val_samples`` held-out images, at most half of them): every
  decision — the information batch PAM regroups on is drawn from it, and the pruning budget is
  judged on it;
- **test** (the rest): everything reported (accuracy in the manifest and the report).

Fine-tuning uses the first ``train_samples`` training images.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pam_tf.config import DataConfig

Data = tuple[np.ndarray, dict[str, np.ndarray]]


@dataclass
class Splits:
    """The four disjoint-by-construction data sets a run uses."""

    train: Data
    val: Data
    test: Data
    info: Data

    def sizes(self) -> dict[str, int]:
        return {"n_train": int(len(self.train[0])), "n_val": int(len(self.val[0])),
                "n_test": int(len(self.test[0])), "n_info": int(len(self.info[0]))}


def _cut(x: np.ndarray, ys: dict[str, np.ndarray], start: int, stop: int | None) -> Data:
    return x[start:stop], {k: v[start:stop] for k, v in ys.items()}


def make_splits(dataset, config: DataConfig, seed: int) -> Splits:
    """Cut `dataset` (a :class:`pam_tf.data.TaskDataset`) as the module docstring says."""
    n_val = min(config.val_samples, len(dataset.x_test) // 2)
    n_train = min(config.train_samples, len(dataset.x_train))
    if config.info_samples > n_val:
        raise ValueError(f"--info_samples={config.info_samples} is more than the validation half "
                         f"({n_val} held-out images): lower it or raise --val_samples")
    info = dataset.info_batch(config.info_samples, seed=seed, pool=n_val)
    return Splits(train=_cut(dataset.x_train, dataset.y_train, 0, n_train),
                  val=_cut(dataset.x_test, dataset.y_test, 0, n_val),
                  test=_cut(dataset.x_test, dataset.y_test, n_val, None),
                  info=info)
