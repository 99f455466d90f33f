"""`python -m imgclf` runs the command line."""

import sys

from imgclf.cli import main

sys.exit(main())
