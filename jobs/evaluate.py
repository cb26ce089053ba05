"""Entry point for `ray job submit`: the `ray-lcb evaluate` command.

    ray job submit --working-dir . -- python jobs/evaluate.py --config local ...

Arguments are those of `ray-lcb evaluate --help`. The script holds no logic.
"""

import sys
from pathlib import Path

# The working directory of a submitted job is the repository, which may not be installed on the cluster.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray_lcb.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
