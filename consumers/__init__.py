"""Independent consumer groups: the runtime anyone can extend, and the built-in consumers.

Write a :class:`Consumer` (see :func:`consumer`), register it under the entry-point group
``parley.consumers`` (or name it ``module:attribute``), and run it with
``parley consumer NAME``. Delivery semantics are documented in :mod:`consumers.runner`.
"""

from consumers.api import ConsumedEvent, Consumer, consumer
from consumers.errors import ConsumerError, PermanentError, RetriableError
from consumers.retry import RetryPolicy

__all__ = ["ConsumedEvent", "Consumer", "ConsumerError", "PermanentError", "RetriableError",
           "RetryPolicy", "consumer"]
