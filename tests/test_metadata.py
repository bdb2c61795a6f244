"""What the package declares: its license file, an extra for each export format the docs show, the hook's comment."""

import configparser
import re

import yolov8_efficientrep_hook

from helpers import REPO

SETUP = configparser.ConfigParser()
SETUP.read(REPO / "setup.cfg")
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]  # the README and the docs/ pages it links
# What Ultralytics 8.4.190's exporter asks check_requirements for (engine/exporter.py), by the docs' export lines:
# ONNX with its default simplify=True; OpenVINO; OpenVINO INT8 through NNCF. TorchScript needs nothing.
EXPORT_NEEDS = {"onnx": {"onnx", "onnxslim", "onnxruntime"}, "torchscript": set(), "openvino": {"openvino"},
                "openvino quantize=8": {"openvino", "nncf"}}


def extra(name: str) -> set[str]:
    """The distribution names an extra of setup.cfg installs."""
    lines = SETUP["options.extras_require"][name].strip().splitlines()
    return {re.split(r"[<>=!~;\[ ]", line.strip())[0] for line in lines if line.strip() and not line.startswith("#")}


def test_license_file_is_the_agpl_v3_that_setup_cfg_declares():
    assert SETUP["metadata"]["license"] == "AGPL-3.0-only" and SETUP["metadata"]["license_files"] == "LICENSE"
    text = (REPO / "LICENSE").read_text()
    assert text.split()[:6] == ["GNU", "AFFERO", "GENERAL", "PUBLIC", "LICENSE", "Version"]
    assert "Version 3, 19 November 2007" in text and text.rstrip().endswith("<https://www.gnu.org/licenses/>.")


def test_every_export_format_the_docs_show_names_an_extra_that_installs_what_ultralytics_asks_for():
    docs = "\n".join(path.read_text() for path in DOCS)
    lines = re.findall(r"^yolo export model=\S+ (format=\w+(?: quantize=8)?).*?#\s*(.*)$", docs, re.MULTILINE)
    shown: dict[str, list[str]] = {}  # format: the comments of every README or docs line that exports it
    for fmt, comment in lines:
        shown.setdefault(fmt.replace("format=", ""), []).append(comment)
    assert set(EXPORT_NEEDS) <= set(shown), shown
    for fmt, needs in EXPORT_NEEDS.items():
        named = [name for comment in shown[fmt] for name in re.findall(r"\[(\w+)\]", comment)]
        if not needs:
            assert not named and any("no extra" in comment for comment in shown[fmt]), (fmt, shown[fmt])
            continue
        assert named and all(needs <= extra(name) for name in named), (fmt, shown[fmt])
        assert all(f"| `{name}` |" in docs for name in named)  # the table of extras (docs/deployment.md) lists them


def test_start_up_hook_comment_says_what_the_hook_waits_for():
    comment = (REPO / "yolov8_efficientrep_hook.pth").read_text().splitlines()[0]
    assert f"once the {yolov8_efficientrep_hook.TRIGGER} package is imported" in comment
    assert "parser" not in comment
