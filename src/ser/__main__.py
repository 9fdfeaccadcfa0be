"""``python -m ser`` runs the command line."""
import sys

from .cli import main

if __name__ == "__main__":  # importing the module (doctest collection, tools) runs nothing
    sys.exit(main())
