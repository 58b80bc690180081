"""Per-subject encryption of personal data (issue 20): subjects, data keys, the key store.

The receiver seals each webhook's personal parts with its subject's data key before the
record reaches Kafka; the projector and the consumer runtime open them; destroying a subject's
key (``parley visitors forget``) makes its personal parts unreadable everywhere, the log's
copies included. See docs/privacy.md.
"""

from parley.privacy.errors import KeyStoreUnavailable, MasterKeyError, PrivacyError
from parley.privacy.keys import DataKey, KeyStore, MemoryKeyStore, open_key_store
from parley.privacy.master import MasterKey, MasterKeys, new_master_key, parse_master_key
from parley.privacy.subjects import parent_of, subject_of, visitor_subject

__all__ = [
    "DataKey",
    "KeyStore",
    "KeyStoreUnavailable",
    "MasterKey",
    "MasterKeyError",
    "MasterKeys",
    "MemoryKeyStore",
    "PrivacyError",
    "new_master_key",
    "open_key_store",
    "parent_of",
    "parse_master_key",
    "subject_of",
    "visitor_subject",
]
