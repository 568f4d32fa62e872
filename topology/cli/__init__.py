"""The `tenantflow` command line (main); `python -m topology.cli` runs it too."""
