"""Checkpoint formats: official PyTorch files (``torch_files`` safe loading and run folders, ``torch_import``
the importer skeleton, ``torch_archs`` its per-code-base hooks), the TF bundle reader (``tf_bundle``), TF ->
ours plans (``tf_plans``), ranged reads of a TF checkpoint on the hub (``tf_remote``) and prefix discovery
(``tf_prefix``). Each architecture's key rules live beside it in ``models/<arch>.py``; the public entry is
:func:`faceedit.upstream.import_checkpoint`.
"""
