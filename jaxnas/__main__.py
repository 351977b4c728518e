"""`python -m jaxnas` = the `jaxnas` command."""
import sys

from jaxnas.cli import main

if __name__ == "__main__":
    sys.exit(main())
