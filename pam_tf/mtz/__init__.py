"""Multi-Task Zipping (MTZ), baseline B2: see :mod:`pam_tf.mtz.zipper` for the method,
:mod:`pam_tf.mtz.linalg` for its numerics and :mod:`pam_tf.mtz.state` for the network form it
works on. The result is an ordinary plan plus weights, which every later stage takes as is."""
from pam_tf.mtz.zipper import METHOD, degrees_per_layer, zip_layer, zip_networks

__all__ = ["METHOD", "degrees_per_layer", "zip_layer", "zip_networks"]
