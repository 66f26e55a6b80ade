"""Graph networks (residual adds, depthwise convolutions) for pam-tf: see docs/graphs.md.

A plain chain keeps its own path (:mod:`pam_tf.chain`, :mod:`pam_tf.plan`); a network with
residual adds or depthwise convolutions is traced here into nodes and **coupling classes**
(channel sets that must be kept or removed together), planned per class (PAM over classes in
:mod:`~pam_tf.graph.merge`, B2's zipping in :mod:`~pam_tf.graph.mtz`), built, costed and
narrowed with coupled removal.
"""
