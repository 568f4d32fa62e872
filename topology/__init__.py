"""Tenant topology store: resource model, validation, IPAM, backends, change feed, API and CLI."""
