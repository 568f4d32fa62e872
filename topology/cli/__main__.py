"""`python -m topology.cli` is the `tenantflow` command."""
import sys

from topology.cli.main import main

sys.exit(main())
