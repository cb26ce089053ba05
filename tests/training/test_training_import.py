"""Importing the training package stays cheap: no Ray, transformers or GPU-only back ends."""

import subprocess
import sys


def test_import_loads_no_ray_transformers_or_flash():
    code = ("import sys, ray_lcb.training; "
            "print(sorted(m for m in ('ray', 'transformers', 'flash_attn', 'ring_flash_attn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
