"""Preloaded by the CLI's fork server (ktx_dagster/warm.py): the project's code location,
imported and resolved once, so each run process forked from the server starts with it.

Only for callers whose code and environment are fixed while they run: the module reads
KTX_* settings at import, in the fork server, with the environment it was started with.
"""

from ktx_dagster.definitions import defs

defs.get_repository_def()  # cached on `defs`: resolved here, inherited by every fork
