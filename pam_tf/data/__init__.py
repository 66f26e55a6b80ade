"""Data for pam-tf: base data sets (:mod:`.sources`), task suites (:mod:`.suites`), the
synthetic test suite (:mod:`.synthetic`) and the structure they all produce,
:class:`TaskDataset`.

    from pam_tf.data import load_suite
    ds = load_suite("fashion2")          # 60 k / 10 k Fashion-MNIST, tasks a and b
    x, ys = ds.info_batch(128)           # held-out batch labelled for every task
"""
from pam_tf.data.dataset import TaskDataset
from pam_tf.data.sources import (
    BaseData, CacheError, DataUnavailableError, data_dir, load_fashion_mnist, load_mnist,
    offline_mode, stratified_split)
from pam_tf.data.suites import (
    build_composite, build_fashion2, build_fashion5, build_fashion_related, list_suites,
    load_suite, related_classes)
from pam_tf.data.synthetic import make_synthetic

__all__ = [
    "TaskDataset", "BaseData", "CacheError", "DataUnavailableError", "data_dir",
    "load_fashion_mnist", "load_mnist", "offline_mode", "stratified_split", "build_composite",
    "build_fashion2", "build_fashion5", "build_fashion_related", "list_suites", "load_suite",
    "related_classes", "make_synthetic",
]
