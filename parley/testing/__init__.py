"""Support for Parley's tests and benchmarks: throwaway servers and test-only listeners.

Never imported by production code: the import-linter contracts in pyproject.toml put this
package above every other (``tests/repo/test_layers.py``), so nothing of ``parley``,
the roles or ``deploy`` may import it; ``tests/`` and ``bench/`` do.
"""
