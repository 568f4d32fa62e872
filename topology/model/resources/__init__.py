"""One module per resource: create/update/delete with Neutron's semantics, inside a WriteTx."""
