"""The one offline set-up of the benchmarks: Ultralytics never reaches the network or the user's settings.

Ultralytics reads its environment variables when it is imported, so this module runs before anything imports it
(``lib/__init__.py`` imports it first): offline, no automatic installs, and a private settings folder unless
``YOLO_CONFIG_DIR`` is set (subprocesses inherit it; the process that made it removes it at exit). Then the plugin is
registered and a local font seeded where Ultralytics' plotting looks: the one download offline settings do not stop.
"""

import atexit
import os
import shutil
import tempfile

if "YOLO_CONFIG_DIR" not in os.environ:
    os.environ["YOLO_CONFIG_DIR"] = tempfile.mkdtemp(prefix="yolov8-efficientrep-bench-")
    atexit.register(shutil.rmtree, os.environ["YOLO_CONFIG_DIR"], True)
os.environ.update(YOLO_OFFLINE="true", YOLO_AUTOINSTALL="false")

from yolov8_efficientrep.offline import seed_fonts  # noqa: E402  importing the package registers the plugin

seed_fonts()
