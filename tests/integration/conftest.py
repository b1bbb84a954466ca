"""Fixtures of the integration tests: a certificate authority and a settable clock."""

from __future__ import annotations

import pytest
import trustme

from tests.integration import gateways


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A CA the local TLS servers get their certificates from."""
    return trustme.CA()


@pytest.fixture
def clock() -> gateways.Clock:
    """Time that moves only when a test says so."""
    return gateways.Clock()
