"""`python -m qlora_gui`, and the entry script of the PyInstaller bundle (hence the absolute import)."""

import multiprocessing
import sys

from qlora_gui.entry import main

if __name__ == "__main__":
    # A frozen app's worker processes (a large data check encodes in them) start as the app's own executable:
    # this runs the worker there instead of the app. It does nothing in a normal start.
    multiprocessing.freeze_support()
    sys.exit(main())
