"""`python -m ktx_dagster.testing.k8s_emulator`: see cli.py."""

from ktx_dagster.testing.k8s_emulator.cli import main

raise SystemExit(main())
