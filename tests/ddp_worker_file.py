"""Write Ultralytics' own DDP worker file for a plugin model, as ``yolo train device=0,1`` writes it; print its path.

Run as ``python ddp_worker_file.py MODEL.yaml DATA.yaml PROJECT`` in a fresh interpreter, with whichever Ultralytics is
first on ``PYTHONPATH`` and the start-up hook on (as in the user's ``yolo train`` process), or call
``write_worker_file`` in a process that has the plugin. The trainer is set up as ``Model.train()`` sets it up before it
launches workers, except that ``device=cpu``: there is no GPU here, and a worker of a CPU trainer trains on the CPU
instead of joining a process group. The plugin is never imported by name.
"""

import sys

from ultralytics import YOLO
from ultralytics.utils.dist import generate_ddp_file


def write_worker_file(cfg: str, data: str, project: str) -> str:
    """Write the worker file of a one-epoch training of ``cfg`` on ``data`` into ``project``; return its path."""
    model = YOLO(cfg)
    overrides = {"model": cfg, "data": data, "epochs": 1, "imgsz": 64, "batch": 8, "device": "cpu", "workers": 0,
                 "plots": False, "project": project, "name": "ddp", "exist_ok": True, "mode": "train"}
    trainer = model._smart_load("trainer")(overrides=overrides, _callbacks=model.callbacks)
    trainer.model = trainer.get_model(cfg=model.model.yaml, weights=None)  # Model.train() does this before train()
    return generate_ddp_file(trainer)


if __name__ == "__main__":
    print(write_worker_file(*sys.argv[1:4]))
