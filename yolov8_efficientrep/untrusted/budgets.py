"""What reading one untrusted checkpoint may cost, in the child and in the parent. Each bound has its reason.

The reference is the largest honest file the readers take, measured on 2026-12-07: a scale-x plugin checkpoint
(``yolov6x-repbifpan``, 603 MB, float16: a 0.42 MB pickle building 67k objects, 57k container items, 1,083 module
records and 1,778 tensors and storages, 8.3k plain values, 0.39 MB of JSON handed back); YOLOv6-L v3.0's training
checkpoint (120 MB) is smaller on every count. Every bound is at least 20x above it and far below what would hurt.
"""

# The file: a scale-x plugin checkpoint written mid-training (model, EMA and optimizer state) is about 2.4 GB.
MAX_FILE_BYTES = 4 << 30
# Records in the archive: one per tensor storage, 1,784 in the reference.
MAX_ARCHIVE_RECORDS = 100_000
# The pickle (data.pkl): 0.42 MB in the reference.
MAX_PICKLE_BYTES = 32 << 20
# Opcodes the pickle may run: 172k in the reference (about 0.2 s in the child per million).
MAX_OPCODES = 2_000_000
# Objects the pickle may create (containers, strings, numbers, module objects): 67k in the reference.
MAX_OBJECTS = 2_000_000
# Items put into containers in all (list and tuple items, dict and set entries): 57k in the reference.
MAX_ELEMENTS = 4_000_000
# Bytes of all strings and bytes created, the rebuilders' results included (10 kB in the reference).
MAX_TEXT_BYTES = 2 * MAX_PICKLE_BYTES
# Integers: 64 bits (the largest honest value is a tensor size); dict keys also within 2**61 - 2, where Python's
# hash of an integer is the integer itself, so no file can make keys collide.
MAX_INT_BITS = 64
MAX_KEY = 2**61 - 2
# Nesting of a plain value (an attribute, a metadata entry): an Ultralytics model YAML nests 4 deep.
MAX_NESTING = 32
# Nodes of one plain value with shared parts counted each time they appear, and of all values together (8.3k in the
# reference): what the parent builds from them, and what any later walk or message over them can cost.
MAX_VALUE_NODES = 200_000
MAX_TOTAL_VALUE_NODES = 1_000_000
# Module records and tensors handed back: 1,083 and 1,778 in the reference.
MAX_RECORDS = 100_000
MAX_TENSORS = 200_000
# Modules inside modules: an Ultralytics or YOLOv6 network nests 5 deep.
MAX_MODULE_DEPTH = 64
# Dimensions of one tensor: convolution weights have 4.
MAX_DIMENSIONS = 8
# The JSON the child hands back: 0.39 MB for the reference. It bounds what this process parses (a few hundred MB of
# Python objects at most), so a file that fits the budgets above but would answer more is refused at this limit.
MAX_OUTPUT_BYTES = 8 << 20
