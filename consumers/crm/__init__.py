"""The built-in ``crm`` consumer: keeps a CRM in step over its HTTP API."""

from consumers.crm.client import CrmApi, HttpCrmClient
from consumers.crm.config import CrmConfig
from consumers.crm.consumer import build, crm_consumer

__all__ = ["CrmApi", "CrmConfig", "HttpCrmClient", "build", "crm_consumer"]
