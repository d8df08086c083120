"""Text-video retrieval with TeachText (Croitoru et al., ICCV 2021).

``metrics`` (numpy: R@k, MdR, MnR, geometric mean, both directions), ``aggregation`` (the Phi
registry over teacher similarity matrices), ``losses`` (ranking loss, distance registry,
``teachtext_loss``), ``model`` (the Collaborative Experts / MoEE model) and ``ce_layout`` (the
Collaborative-Experts feature layout on disk and its pickle-free copy). Import the sub-modules
directly; this package imports nothing heavy.
"""
