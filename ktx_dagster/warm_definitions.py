"""Preloaded by the CLI's fork server (ktx_dagster/warm.py): the code location named in
KTX_WARM_CODE_LOCATION, imported and resolved once, so each run process forked from the
server starts with it.

Only for callers whose code and environment are fixed while they run: the code location
reads KTX_* settings at import, in the fork server, with the environment it was started with.
"""

import os

from ktx_dagster.code_location import CodeLocation
from ktx_dagster.warm import CODE_LOCATION_ENV

if os.environ.get(CODE_LOCATION_ENV):
    # Resolved here (cached on the Definitions object), inherited by every fork.
    CodeLocation.from_json(os.environ[CODE_LOCATION_ENV]).load()
