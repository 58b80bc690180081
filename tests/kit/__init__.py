"""Test kits: the shared, test-free helpers of the suite (event factories, drivers of real
processes, stand-ins for third parties, the store contract suite, the real PostgreSQL), one
module per job, imported as ``from tests.kit.<module> import …``. Kits with fixtures that tests
in several folders use are registered once in tests/conftest.py (``pytest_plugins``)."""

import pkgutil

import pytest

# Plain modules, not test files: have pytest rewrite their asserts as it does a test's
# (registered by name before any of them is imported; this package itself has no asserts).
pytest.register_assert_rewrite(*(f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__)))
