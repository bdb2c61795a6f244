"""The one report helper: where results go, the file's marker and overwrite guard, tables, the machine, the writing.

Every benchmark writes markdown whose first line (``marker``) names the script, so that a rerun replaces its own
report and nothing else; the header table describes the machine, the libraries, the moment and the command.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

from .timing import RUNS_FOR_A_MEASUREMENT

RESULTS = Path(__file__).resolve().parents[1] / "results"  # where every benchmark writes by default


def marker(script: str) -> str:
    """Return the first line of a report written by ``script``: it lets a rerun replace the file."""
    return f"<!-- written by benchmarks/{script}; rerun it to update this file -->"


def refuse_to_overwrite_foreign(out: Path, other: Path, first_line: str) -> None:
    """Stop before measuring if the report ``out`` or the file ``other`` written beside it exists and the report was
    not written by the same benchmark."""
    ours = out.is_file() and out.read_text().startswith(first_line)
    for path in (out, other):
        if path.exists() and not ours:
            raise SystemExit(f"{path} exists and was not written by this benchmark (its report would start with "
                             f"{first_line!r}); choose another --out / --chart, or move the file")


def table(header: list[str], rows: list[list[str]], align: str | list[str] = "---:") -> str:
    """Return a markdown table, first column left-aligned, the others aligned by ``align`` (one for all, or a list)."""
    aligns = [align] * (len(header) - 1) if isinstance(align, str) else align
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", *aligns]) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def shape_label(shape: tuple[int, int]) -> str:
    """Return ``batch B @S`` for a (batch, imgsz) shape."""
    return f"batch {shape[0]} @{shape[1]}"


def link(path: Path, out: Path) -> str:
    """Return ``path`` as the report ``out`` links to it: relative to the report's folder."""
    return Path(os.path.relpath(path, out.parent)).as_posix()


def cpu_name() -> str:
    """Return the CPU's model name as the OS reports it."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The instruction sets that decide which INT8 and float kernels a CPU runs (and so the order of the INT8 tables).
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def cpu_flags() -> str:
    """Return which of ``CPU_FLAGS`` the CPU has (from /proc/cpuinfo), e.g. ``avx2 avx512f avx512_vnni; no amx_int8``."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    present = [flag for flag in CPU_FLAGS if flag in flags]
    missing = [flag for flag in CPU_FLAGS if flag not in flags]
    return f"{' '.join(present) or 'none of them'}; without {', '.join(missing) or 'none'}"


def all_cpu_flags() -> str:
    """Return every flag ``lscpu`` (/proc/cpuinfo) lists for the CPU, space-separated."""
    try:
        with open("/proc/cpuinfo") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("flags")), "unknown")
    except OSError:
        return "unknown (no /proc/cpuinfo)"


def machine_info(threads: int, openvino: bool = False, modelopt: bool = False) -> dict[str, str]:
    """Describe the machine, the libraries (OpenVINO and NNCF too if ``openvino``, NVIDIA ModelOpt if ``modelopt``)
    and the moment, for the header."""
    import numpy
    import onnx
    import onnxruntime
    import torch
    import ultralytics

    import yolov8_efficientrep

    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": cpu_name(),
        "CPU flags": cpu_flags(),
        "cores": f"{cores} logical, {usable} usable by this process",
        "threads": f"{threads} (torch.set_num_threads and ONNX Runtime intra-op threads; inter-op 1)",
        "OS": platform.platform(),
        "versions": f"Python {platform.python_version()}, torch {torch.__version__}, onnxruntime "
        f"{onnxruntime.__version__}, onnx {onnx.__version__}, ultralytics {ultralytics.__version__}, numpy "
        f"{numpy.__version__}, yolov8-efficientrep {yolov8_efficientrep.__version__}",
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
    }
    if openvino:
        import nncf
        import openvino as ov

        info["versions"] += f", openvino {ov.__version__}, nncf {nncf.__version__}"
    if modelopt:
        import modelopt as mo

        info["versions"] += f", nvidia-modelopt {mo.__version__}"
    return info


def header(title: str, info: dict[str, str], warmup: int, runs: int) -> str:
    """Return the title and the table describing machine, libraries, date and timing protocol."""
    rows = [[key, value] for key, value in info.items()]
    rows.append(["timing", f"{runs} timed runs after {warmup} warm-up runs per cell; median [interquartile range]"])
    text = f"# {title}\n\n{table(['', ''], rows, align='---')}\n"
    if runs < RUNS_FOR_A_MEASUREMENT:
        text += (f"\n**Smoke-test settings ({runs} timed runs, fewer than {RUNS_FOR_A_MEASUREMENT}): these numbers "
                 f"prove the scripts run; they are not a measurement.**\n")
    return text


def write(out: Path, sections: list[str]) -> None:
    """Write the report: its sections, blank-line separated."""
    out.write_text("\n\n".join(section.strip("\n") for section in sections) + "\n")
