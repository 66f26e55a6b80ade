"""Graph networks (residual adds, depthwise convolutions) for pam-tf: see docs/graphs.md.

A plain chain keeps its own path (:mod:`pam_tf.chain`, :mod:`pam_tf.plan`); a network with
residual adds or depthwise convolutions is traced here into nodes and **coupling classes**
(channel sets that must be kept or removed together), planned per class, built, costed and
narrowed with coupled removal.
"""
