"""Old import path of :mod:`faceedit.convert.tf_remote`, kept for scripts: this name *is* that module."""

import sys

from faceedit.convert import tf_remote

sys.modules[__name__] = tf_remote
