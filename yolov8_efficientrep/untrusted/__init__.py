"""Files the plugin did not write are parsed in a jailed child process; the user's process receives data only.

A downloaded YOLOv6 checkpoint (``import-yolov6``) and the input of ``fuse`` are ``torch.save`` archives whose pickle
could be crafted to run code, hang, exhaust memory or crash the parser. No such file is parsed in the user's process:

- the child (``child.py``, started by ``jail.py`` with address-space, CPU-time and wall-clock limits, no inherited
  descriptors, an empty working directory and environment) checks the archive (``archive.py``), runs the pickle on
  an interpreter of its own with budgets (``machine.py``) whose only callables are the inert rebuilders of
  ``rebuilders.py``, and writes the result as JSON (``wire.py``): module objects as records of class path,
  attributes, child modules and tensors; tensors as views of storage records, located by their byte range in the file.
- the parent (``decode.py``) validates that JSON again (counts, types, references, sizes, no cycles), reads each
  storage range from the file itself and checks every tensor for finiteness, and hands its callers inert ``Record``s
  (``records.py``).

The child's modules (``archive``, ``machine``, ``rebuilders``, ``wire``, ``budgets``, ``child``) import only the
standard library: the child runs them as the top-level package ``untrusted``, without torch, Ultralytics or this
package's ``__init__``. This file must stay import-free for the same reason.
"""
