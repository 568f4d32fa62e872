"""Tenant topology, one package per job:

- `model/`  Neutron semantics: resource specs, validation, IPAM, policy context, the service layer
- `store/`  persistence: the Store contract and change feed, SQLite and etcd backends, write txns
- `view.py` the controller's in-memory, indexed copy of the store (what compilers read)
- `api/`    northbound HTTP: the Neutron REST API and its OpenAPI document
- `cli/`    the `tenantflow` command line (a client of the API)
"""
