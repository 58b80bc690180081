"""Helpers of the consumer tests: events to produce, runners, a recording consumer, the
checks the SQLite and PostgreSQL search indexes share."""
