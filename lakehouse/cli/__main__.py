"""`python -m lakehouse.cli`: the same as the `lakehouse` command."""

import sys

from lakehouse.cli.main import main

sys.exit(main())
