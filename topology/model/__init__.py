"""Neutron semantics: resource specs and rules (resources/), validation, IPAM, who-may-do-what
(context), typed errors, settings, and the business layer (service) every write goes through."""
