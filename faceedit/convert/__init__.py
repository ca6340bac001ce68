"""Checkpoint formats: the TF bundle reader (``tf_bundle``), TF -> ours plans (``tf_plans``), ranged reads
of a TF checkpoint on the hub (``tf_remote``) and prefix discovery (``tf_prefix``). Official PyTorch files
are read by :mod:`faceedit.upstream`; each architecture's key rules live beside it in ``models/<arch>.py``.
"""
