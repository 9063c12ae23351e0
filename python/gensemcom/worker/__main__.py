"""``python -m gensemcom.worker``: run, query or secure the inference worker (see ``--help``)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
