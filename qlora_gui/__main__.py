"""`python -m qlora_gui`, and the entry script of the PyInstaller bundle (hence the absolute import)."""

import sys

from qlora_gui.entry import main

if __name__ == "__main__":
    sys.exit(main())
