"""`dagster-daemon` with a shorter backfill loop, for tests and benchmarks only.

    python tests/ui/run_daemon.py SECONDS run -w workspace.yaml

The backfill daemon sleeps DEFAULT_DAEMON_INTERVAL_SECONDS (30) between evaluations; Dagster
offers no instance setting for it. This sets the constant, then runs the unchanged CLI.
"""

import sys

import dagster._daemon.controller as controller
from dagster._daemon.cli import main

if __name__ == "__main__":
    controller.DEFAULT_DAEMON_INTERVAL_SECONDS = float(sys.argv.pop(1))
    sys.argv[0] = "dagster-daemon"
    sys.exit(main())
