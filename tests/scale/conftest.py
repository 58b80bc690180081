"""The scale tests' directory is put on ``sys.path`` so its modules can import their shared
helper module (``scale_kit``), as tests/projector does for its kits. PostgreSQL fixtures
(``postgres_dsn``, ``pg_url``) come from tests/conftest.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
