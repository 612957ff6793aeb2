from __future__ import annotations

import sys

from .cli import main

# Guarded: the compaction worker process (spawned) imports this module again.
if __name__ == "__main__":
    sys.exit(main())
