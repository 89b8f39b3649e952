"""A system tool the README lists is missing: fail loudly (never skip), naming the package to install.

`make test` installs every one of them first (.ci/system-packages), so this only fires when the tests run
without it (plain pytest on a machine that lacks the package).
"""

from __future__ import annotations

from typing import NoReturn

import pytest


def missing_tool(tool: str, package: str) -> NoReturn:
    """Fail the test: ``tool`` (Debian package ``package``) is not installed."""
    pytest.fail(
        f"{tool} not found: install the Debian package {package} (make test installs it: .ci/system-packages)",
        pytrace=False,
    )
