"""Northbound HTTP: the Neutron-compatible REST API (app) and its OpenAPI document (openapi)."""
