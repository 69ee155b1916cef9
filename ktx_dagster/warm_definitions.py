"""Preloaded by the CLI's fork server (ktx_dagster/warm.py): the code locations named in
KTX_WARM_CODE_LOCATION (a JSON list), imported and resolved once, so each run process forked
from the server starts with them.

Only for callers whose code and environment are fixed while they run: the code location
reads KTX_* settings at import, in the fork server, with the environment it was started with.
"""

import json
import os

from ktx_dagster.code_location import CodeLocation
from ktx_dagster.warm import CODE_LOCATION_ENV

for _location in json.loads(os.environ.get(CODE_LOCATION_ENV) or "[]"):
    # Resolved here (cached on the Definitions object), inherited by every fork.
    CodeLocation.from_json(_location).load()
