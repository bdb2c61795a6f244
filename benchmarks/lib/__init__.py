"""The benchmark scripts' shared code, imported by them as ``lib`` (``benchmarks/`` is on their ``sys.path``).

Importing the package first makes Ultralytics offline (``lib.offline``), so no module here reaches Ultralytics before
its settings are in place.
"""

from . import offline  # first: Ultralytics reads its settings when it is imported

__all__ = ["offline"]
