"""`python -m admin ...` runs the operator command line."""

import sys

from admin.cli import main

sys.exit(main())
