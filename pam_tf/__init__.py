"""pam-tf: Pruning-Aware Merging of single-task CNNs into one multitask network, exported as
one TFLite model per task combination.

Stages (one module each): data/zoo -> trace (chain) -> information -> regroup -> plan -> build
-> prune -> export -> report. Import Keras only through :mod:`pam_tf.compat`.
"""
__version__ = "0.1.0"
