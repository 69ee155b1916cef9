"""The `user_env` fixture: see journey_env.py."""

from __future__ import annotations

import pytest

from journey_env import UserEnv, build_user_env


@pytest.fixture(scope="session")
def user_env(tmp_path_factory) -> UserEnv:
    return build_user_env(tmp_path_factory.mktemp("dist"))
