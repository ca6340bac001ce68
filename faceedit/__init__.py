"""faceedit: edit faces in photos with AttGAN, STGAN, StarGAN and U-GAT-IT.

Importing the package is cheap (no torch): the CLI's ``--help`` and ``models list`` stay instant.
"""

__version__ = "0.1.0"
