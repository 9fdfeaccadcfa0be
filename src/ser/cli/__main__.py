"""``python -m ser.cli`` runs the command line (as ``ser`` and ``python -m ser`` do)."""
import sys

from . import main

if __name__ == "__main__":  # importing the module (doctest collection, tools) runs nothing
    sys.exit(main())
