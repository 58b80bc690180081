"""Parley's webhook receiver: authenticate, validate, and append to Kafka before answering 2xx."""

from receiver.errors import ReceiverError
from receiver.publisher import Publisher, PublisherOptions
from receiver.role import ReceiverRole

__all__ = ["Publisher", "PublisherOptions", "ReceiverError", "ReceiverRole"]
