"""The recipes' steps (:mod:`faceedit.api` strings them together on :mod:`faceedit.pipeline`):
``prepare`` (read, detect, align ahead of the generator), ``edit`` and ``anime`` (the generator step and
the finish behind it), ``find`` (detect/align per photo), ``writeback`` (paste back, write)."""
