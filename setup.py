"""Build hook: put the start-up hook's ``.pth`` at the root of site-packages, for wheels and editable installs alike.

Metadata lives in setup.cfg. Python only runs ``.pth`` files that sit directly in a site directory, and setuptools
has no option that places a file there, so one extra ``build`` step writes it: into ``build_lib`` for a wheel, and
straight into the editable wheel (``install_lib``) for ``pip install -e``, where ``build_lib`` is not installed.
"""

from __future__ import annotations

import os

from setuptools import Command, setup
from setuptools.command.build import build

PTH = "yolov8_efficientrep_hook.pth"


class build_startup_hook(Command):  # noqa: N801 (setuptools command names are lower case)
    """Copy ``yolov8_efficientrep_hook.pth`` to where the installed wheel's top-level modules go."""

    description = "install the start-up hook that registers the plugin when Ultralytics loads"
    user_options: list = []

    def initialize_options(self) -> None:
        self.build_lib = None
        self.editable_mode = False

    def finalize_options(self) -> None:
        self.set_undefined_options("build_py", ("build_lib", "build_lib"))

    def _target(self) -> str:
        # an editable wheel is assembled in install_lib; what build_lib holds is never installed in that mode
        root = self.get_finalized_command("install").install_lib if self.editable_mode else self.build_lib
        return os.path.join(root, PTH)

    def run(self) -> None:
        self.copy_file(PTH, self._target(), preserve_mode=False)

    def get_source_files(self) -> list[str]:
        return [PTH]

    def get_outputs(self) -> list[str]:
        return [] if self.editable_mode else [self._target()]

    def get_output_mapping(self) -> dict[str, str]:
        return {} if self.editable_mode else {self._target(): PTH}


class build_with_startup_hook(build):  # noqa: N801
    """``build``, plus the start-up hook step."""

    sub_commands = [*build.sub_commands, ("build_startup_hook", None)]


setup(cmdclass={"build": build_with_startup_hook, "build_startup_hook": build_startup_hook})
