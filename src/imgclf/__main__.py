"""`python -m imgclf` runs the command line."""

import sys

from imgclf.cli import main

if __name__ == "__main__":
    sys.exit(main())
