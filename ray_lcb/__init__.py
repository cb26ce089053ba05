"""ray_lcb: long-context instruction data, training and evaluation on Ray."""

from ray_lcb.openmp import set_openmp_defaults

set_openmp_defaults()  # before anything imports torch (see ray_lcb/openmp.py)
