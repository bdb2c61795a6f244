"""A model YAML row that cannot be built names its file, section, index and text, and says what is wrong in plain words.

Ultralytics' own YAMLs build exactly as without the plugin: ``test_registration.py`` compares all of them.
"""

import pytest
import yaml
from ultralytics import YOLO

from yolov8_efficientrep import UnknownModuleError, YAMLRowError


def build(tmp_path, row: list, name: str = "my-model.yaml"):
    """Build a detector whose backbone row 1 is ``row`` (row 0 a Conv, then Detect), from a YAML file."""
    spec = {"nc": 2, "backbone": [[-1, 1, "Conv", [16, 3, 2]], row], "head": [[[1], 1, "Detect", ["nc"]]]}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return YOLO(path).model


@pytest.mark.parametrize("name, suggestion", [
    ("RepVGGBlok", "did you mean RepVGGBlock"),  # the plugin's block, misspelled
    ("repblock", "did you mean RepBlock"),  # names are case-sensitive
    ("C2F", "did you mean C2f"),  # an Ultralytics module
    ("nn.Upsampel", "did you mean nn.Upsample?"),  # a torch module
    ("Upsample", "did you mean nn.Upsample?"),  # torch modules need their nn. prefix
    ("Zorglub", "no known module has a similar name"),
])
def test_unknown_module_names_the_row_and_the_closest_known_names(tmp_path, name, suggestion):
    row = [-1, 1, name, [64, 3, 2]]
    with pytest.raises(UnknownModuleError) as error:
        build(tmp_path, row)
    text = str(error.value)
    assert text.startswith(f"{tmp_path / 'my-model.yaml'}, backbone row 1 {row}: unknown module {name!r}; {suggestion}")
    assert "Module names are case-sensitive" in text
    # the kind of error Ultralytics raises: KeyError for a bare name, AttributeError for an nn. name
    assert isinstance(error.value, KeyError) and isinstance(error.value, AttributeError)


def test_unknown_module_of_a_yaml_needing_a_newer_ultralytics_names_the_upgrade(tmp_path):
    spec = {"nc": 2, "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "C9k9", [64]]],
            "head": [[[1], 1, "Detect", ["nc"]]]}
    path = tmp_path / "future.yaml"  # as the YOLO11 / YOLO26 configs declare it, with a release nobody has yet
    path.write_text("# Needs Ultralytics >= 99.0.0 (its C9k9 rows)\n" + yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(UnknownModuleError, match=r"future.yaml, backbone row 1 .*: unknown module 'C9k9' in "
                                                 r"Ultralytics 8\.\d+\.\d+; this model YAML needs Ultralytics >= "
                                                 r"99\.0\.0: pip install -U 'ultralytics>=99\.0\.0'"):
        YOLO(path)
    spec["backbone"][1] = [-1, 1, "SPPF", [64, 5, 3, True, 7, 8]]  # arguments this release does not take
    path.write_text("# Needs Ultralytics >= 99.0.0\n" + yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(YAMLRowError, match=r"backbone row 1 .*: TypeError: .* in Ultralytics 8\.\d+\.\d+; this model "
                                           r"YAML needs Ultralytics >= 99\.0\.0"):
        YOLO(path)


def test_unknown_module_from_the_plain_yolo_cli_ends_in_one_line_naming_the_file(run_fresh, shapes_data, tmp_path):
    row = [-1, 1, "RepVGGBlok", [64, 3, 2]]
    spec = {"nc": 2, "backbone": [[-1, 1, "Conv", [16, 3, 2]], row], "head": [[[1], 1, "Detect", ["nc"]]]}
    (tmp_path / "my-model.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = run_fresh("yolo", "train", "model=my-model.yaml", f"data={shapes_data}", "epochs=1", cwd=tmp_path,
                       check=False)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert last.startswith("yolov8-efficientrep (yolo): error: my-model.yaml, backbone row 1 "), last
    assert "unknown module 'RepVGGBlok'; did you mean RepVGGBlock" in last and len(last) < 300


@pytest.mark.parametrize("row, explanation", [
    ([-1, 1, "RepVGGBlock"], "the row has 3 items, not 4 (no args list: write [] for a module without arguments)"),
    ([-1, 1, "Conv"], "the row has 3 items, not 4 (no args list"),  # the row format is the same for every module
    ([-1, 1, "RepVGGBlock", 64], "args is 64: use a list, e.g. [64] (or [] for none)"),
    ([-1, "2", "RepBlock", [64]], "repeats is '2': use a whole number"),
    ("RepVGGBlock", "the row is str 'RepVGGBlock', not a list"),
])
def test_rows_python_cannot_unpack_are_explained(tmp_path, row, explanation):
    with pytest.raises(YAMLRowError) as error:  # a ValueError, like Python's "not enough values to unpack"
        build(tmp_path, row)
    text = str(error.value)
    assert text.startswith(f"{tmp_path / 'my-model.yaml'}, backbone row 1 {row}: {explanation}")
    assert text.endswith("rows read [from, repeats, module, args], e.g. [-1, 1, Conv, [64, 3, 2]]")


@pytest.mark.parametrize("row, explanation", [
    ([-1, 1, "RepVGGBlock", ["sixty-four", 3, 2]], "c2 (the first arg, output channels) is 'sixty-four'; use a number"),
    ([-1, 1, "RepVGGBlock", []], "args is empty; RepVGGBlock needs at least c2, its number of output channels"),
    ([-1, 2, "RepBlock", []], "args is empty; RepBlock needs at least c2"),
])
def test_plugin_rows_failing_on_python_internals_say_what_is_wrong(tmp_path, row, explanation):
    with pytest.raises(YAMLRowError) as error:
        build(tmp_path, row)
    text = str(error.value)
    assert text.startswith(f"{tmp_path / 'my-model.yaml'}, backbone row 1 {row}: {explanation}")
    assert "not supported between" not in text and "list index out of range" not in text
    assert f"{row[2]} args are [c2," in text


@pytest.mark.parametrize("row, explanation", [
    ([-1, 1, "RepConv", [64, 3, 2, "relu"]],
     "RepConv takes [c2, k, s], and a 4th arg is its padding p, which must be 1, not 'relu': a row cannot set "
     "RepConv's activation (it uses the YAML's activation:); for an activation of its own, use a RepVGGBlock row, "
     "whose args are [c2, k, s, act]"),
    ([-1, 1, "RepConv", [64, 5, 2]], "RepConv's kernel k must be 3, not 5; RepConv takes [c2, k=3, s]"),
])
def test_repconv_rows_that_ultralytics_asserts_on_get_a_sentence(tmp_path, row, explanation):
    with pytest.raises(YAMLRowError) as error:  # Ultralytics' RepConv fails with a bare AssertionError
        build(tmp_path, row)
    assert str(error.value) == (f"{tmp_path / 'my-model.yaml'}, backbone row 1 {row}: {explanation}. Plugin rows read "
                                f"[from, repeats, module, args], e.g. [-1, 1, Conv, [64, 3, 2]]; RepConv args are "
                                f"[c2, k=3, s=1].")


def test_errors_of_ultralytics_own_modules_in_well_formed_rows_stay_ultralytics(tmp_path):
    with pytest.raises(TypeError) as error:  # Conv takes at most 7 arguments
        build(tmp_path, [-1, 1, "Conv", [16, 3, 1, None, 1, 1, True, "extra"]])
    assert not isinstance(error.value, YAMLRowError)
