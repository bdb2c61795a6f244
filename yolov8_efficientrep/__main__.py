"""``python -m yolov8_efficientrep COMMAND ...``: see ``cli.py``."""

import sys

from .cli import main

sys.exit(main())
