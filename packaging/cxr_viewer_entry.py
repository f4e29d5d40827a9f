"""PyInstaller entry point of the frozen ``cxr-viewer`` (the same as the ``cxr-viewer`` gui-script).

Kept outside the package so the frozen app starts exactly like ``python -m cxr_viewer``.
"""

from __future__ import annotations

import multiprocessing
import sys

if __name__ == "__main__":
    # torch (and the DataLoader, if ever used) may spawn helper processes: in a frozen app those
    # re-run this executable, and freeze_support() turns them into workers instead of new viewers.
    multiprocessing.freeze_support()
    from cxr_viewer.__main__ import main

    sys.exit(main())
