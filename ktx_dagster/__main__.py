"""`python -m ktx_dagster ...` is the `ktx` command (ktx_dagster/cli.py)."""

import sys

from ktx_dagster.cli import main

if __name__ == "__main__":
    sys.exit(main())
