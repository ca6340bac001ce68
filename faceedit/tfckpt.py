"""Old import path of :mod:`faceedit.convert.tf_bundle`, kept for scripts: this name *is* that module."""

import sys

from faceedit.convert import tf_bundle

sys.modules[__name__] = tf_bundle
