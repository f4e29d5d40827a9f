"""PyInstaller runtime hook: runs in the frozen app before any of its own code.

Pins pyqtgraph's Qt binding to PySide6 (the only one in the bundle): the Makefile's ``QT_API=pyside6``
is not set when a user starts the app from a launcher. PyInstaller's own PySide6 hook already points
``QT_PLUGIN_PATH`` at the bundled plugins.
"""

import os

os.environ["QT_API"] = "pyside6"
os.environ["PYQTGRAPH_QT_LIB"] = "PySide6"
