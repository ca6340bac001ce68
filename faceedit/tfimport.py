"""Old import path of :mod:`faceedit.convert.tf_plans`, kept for scripts: this name *is* that module."""

import sys

from faceedit.convert import tf_plans

sys.modules[__name__] = tf_plans
