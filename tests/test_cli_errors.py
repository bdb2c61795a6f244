"""The ``yolov8-efficientrep`` command: every failure is one line naming the file and the fix, with exit status 1; no
file of the user's is overwritten, lost or left half-written; ``--version``, ``--help``.

The console script runs in a fresh process where the process matters (signals, ``kill -9``, a file size limit, a
dropped capability, ``--help`` without torch, ``--version``, ``--traceback``); the other refusals call its ``main()``
in this process, which is what the script runs."""

import os
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
import ultralytics

import yolov8_efficientrep
from yolov8_efficientrep.cli import describe, main
from yolov8_efficientrep.output_files import PARTIAL_PREFIX

COMMAND = str(Path(sys.executable).with_name("yolov8-efficientrep"))  # the installed console script
SOURCE_FIX = "pass a .pt that Ultralytics training wrote, e.g. runs/detect/train/weights/best.pt"


def one_line_error(result, command: str) -> str:
    """Return the single stderr line of a failed command, after checking that it is the only output and no traceback."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"yolov8-efficientrep {command}: error: "), result.stderr
    return lines[0]


@pytest.fixture
def cli(capsys):
    """Return a function running the command's ``main()`` in this process: its exit status, stdout and stderr."""

    def run(*arguments: object) -> types.SimpleNamespace:
        capsys.readouterr()
        status = main([str(argument) for argument in arguments])
        out, err = capsys.readouterr()
        return types.SimpleNamespace(returncode=status, stdout=out, stderr=err)

    return run


def files(folder: Path) -> dict:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def cut_short(path: Path) -> Path:
    """Write a real torch checkpoint, then keep only its first half, like an interrupted copy."""
    torch.save({"model": torch.nn.Conv2d(3, 16, 3).state_dict()}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def text_file(path: Path) -> Path:
    """Write a text file with a checkpoint's name."""
    path.write_text("epochs: 10\n")
    return path


def tensors_only(path: Path) -> Path:
    """Write a torch file that holds tensors but no Ultralytics model."""
    torch.save({"weights": torch.zeros(3)}, path)
    return path


def edited(trained_checkpoint: Path, path: Path, edit) -> Path:
    """Save a copy of the trained checkpoint after ``edit(checkpoint dict, its model)``."""
    checkpoint = torch.load(trained_checkpoint, weights_only=False)
    edit(checkpoint, checkpoint.get("ema") or checkpoint["model"])
    torch.save(checkpoint, path)
    return path


@pytest.fixture
def best(trained_checkpoint, tmp_path) -> Path:
    """A copy of the trained checkpoint, alone in a new folder."""
    return Path(shutil.copy(trained_checkpoint, tmp_path / "best.pt"))


@pytest.mark.parametrize("make, expected", [
    (cut_short, "is not a PyTorch checkpoint (not the zip archive torch.save writes: it is empty, cut short"),
    (text_file, "is not a PyTorch checkpoint"),
    (tensors_only, "holds no model under 'ema' or 'model' (a state dict or another layout)"),
])
def test_fuse_names_a_file_that_is_not_a_checkpoint(cli, tmp_path, make, expected):
    checkpoint = make(tmp_path / "best.pt")
    line = one_line_error(cli("fuse", checkpoint), "fuse")
    assert f"error: {checkpoint} {expected}" in line
    assert line.endswith("pass a .pt that Ultralytics training wrote" if make is tensors_only else
                         f"{SOURCE_FIX}, copied whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]  # no partial output


def test_fuse_names_a_typo_in_the_input_path_not_the_output(cli, best, tmp_path, monkeypatch):
    (tmp_path / "runs" / "detect" / "train" / "weights").mkdir(parents=True)
    best.rename(tmp_path / "runs" / "detect" / "train" / "weights" / "best.pt")
    before = files(tmp_path)
    typo = Path("runs/detect/trian/weights/best.pt")
    monkeypatch.chdir(tmp_path)
    line = one_line_error(cli("fuse", typo), "fuse")
    assert line.endswith(f"error: {typo}: no such checkpoint (the folder runs/detect/trian does not exist); check the "
                         f"path, or {SOURCE_FIX}")
    assert files(tmp_path) == before and not (tmp_path / "runs" / "detect" / "trian").exists()


def test_fuse_names_the_missing_output_folder_before_any_work(cli, best, tmp_path):
    target = tmp_path / "newdir" / "x.pt"
    line = one_line_error(cli("fuse", best, "-o", target), "fuse")
    assert line.endswith(f"{target}: the folder {target.parent} does not exist; create it, or choose another output "
                         f"path")
    assert not target.parent.exists()


def test_fuse_says_the_input_is_not_a_checkpoint_before_naming_an_existing_output(cli, tmp_path):
    onnx_file = tmp_path / "best.onnx"
    onnx_file.write_bytes(b"\x08\x07ONNX graph")
    (tmp_path / "best-fused.pt").write_bytes(b"mine")
    line = one_line_error(cli("fuse", onnx_file), "fuse")
    assert f"error: {onnx_file} is not a PyTorch checkpoint" in line and "exists" not in line
    assert (tmp_path / "best-fused.pt").read_bytes() == b"mine"


def test_fuse_refuses_an_existing_output_naming_force_and_o(cli, best):
    target = best.with_name("best-fused.pt")
    target.write_bytes(b"mine")
    line = one_line_error(cli("fuse", best), "fuse")
    assert line.endswith(f"{target} exists; add --force to replace it, or write elsewhere with -o PATH.pt")
    assert target.read_bytes() == b"mine"


def test_fuse_refuses_the_source_as_output_at_once(cli, best):
    before = best.read_bytes()
    line = one_line_error(cli("fuse", best, "-o", best), "fuse")
    assert line.endswith(f"{best}: refusing to overwrite the source checkpoint best.pt (the source is never an "
                         f"output); choose another output path")
    assert best.read_bytes() == before and [p.name for p in best.parent.iterdir()] == ["best.pt"]


def test_fuse_refuses_a_folder_as_output_even_with_force(cli, best):
    folder = best.with_name("adir.pt")
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    line = one_line_error(cli("fuse", best, "-o", folder, "--force"), "fuse")
    assert line.endswith(f"{folder} is a folder, and an output replaces only files; choose a file path such as "
                         f"{folder / 'model.pt'}")
    assert files(folder) == {Path("notes.txt"): b"mine"}


def test_fuse_names_a_read_only_output_folder_before_any_work(run_fresh, best, tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    prefix = []
    if os.geteuid() == 0:  # root writes anywhere: run without the capability that lets it
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv, which could drop the capability to write anywhere")
        prefix = ["setpriv", "--inh-caps=-dac_override", "--bounding-set=-dac_override"]
    target = folder / "x.pt"
    line = one_line_error(run_fresh(*prefix, COMMAND, "fuse", best, "-o", target, check=False), "fuse")
    assert line.endswith(f"{target}: cannot write it (Permission denied); check its permissions, or choose another "
                         f"path. Nothing was written")
    assert list(folder.iterdir()) == []


@pytest.mark.slow
def test_fuse_names_a_write_that_exceeds_the_file_size_limit_and_leaves_nothing(run_fresh, best):
    """A real write refused by the kernel (EFBIG, past ``ulimit -f``), half-way through the 18 MB fused file."""
    before = best.read_bytes()
    limit = f"ulimit -f {4096} && exec \"$0\" \"$@\""  # 4 MB, in blocks of 1 KiB
    result = run_fresh("bash", "-c", limit, COMMAND, "fuse", best, check=False)
    line = one_line_error(result, "fuse")
    target = best.with_name("best-fused.pt")
    assert line.endswith(f"{target}: cannot write it (File too large); the file is larger than this process may "
                         f"write (see ulimit -f); raise that limit, or choose another path. Nothing was written")
    assert best.read_bytes() == before and [p.name for p in best.parent.iterdir()] == ["best.pt"]


def test_fuse_names_a_yolov6_checkpoint_and_the_import_command(cli, tmp_path):
    pytest.importorskip("yolov6.models.yolo", reason="YOLOv6's code is not installed: pip install --no-deps "
                                                     "yolov6detect==0.4.1 tqdm")
    import yolov6_models as ym

    source = ym.save(ym.build(ym.yolov6_config("v3", "n", "n"), distill_ns=True), tmp_path / "yolov6n.pt")
    line = one_line_error(cli("fuse", source), "fuse")
    assert line == (f"yolov8-efficientrep fuse: error: {source} is a YOLOv6 checkpoint, not an Ultralytics one; "
                    f"convert it first: yolov8-efficientrep import-yolov6 {source} -o yolov6n-ultralytics.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["yolov6n.pt"]


def test_fuse_never_hands_a_checkpoint_of_uninstalled_code_to_ultralytics(cli, run_fresh, tmp_path):
    """Ultralytics' loader would try to pip-install the package; the check reads the pickle without running it."""
    package = tmp_path / "made_up_detector"
    package.mkdir()
    (package / "__init__.py").write_text("import torch\nclass Net(torch.nn.Conv2d):\n    pass\n")
    source = tmp_path / "theirs.pt"
    save = f"import torch, made_up_detector as m; torch.save({{'model': m.Net(3, 8, 3)}}, {str(source)!r})"
    run_fresh(sys.executable, "-c", save, env={"PYTHONPATH": str(tmp_path)})
    line = one_line_error(cli("fuse", source), "fuse")
    assert line.endswith(f"{source} pickles made_up_detector.Net, from the package made_up_detector, which is not "
                         f"installed; {SOURCE_FIX} (nothing was loaded or installed)")


def test_fuse_names_the_tensor_that_is_not_finite(cli, trained_checkpoint, tmp_path):
    source = edited(trained_checkpoint, tmp_path / "nan.pt",
                    lambda ckpt, model: model.model[2].m[0].conv1.conv.weight.data.view(-1)[0].fill_(float("nan")))
    line = one_line_error(cli("fuse", source), "fuse")
    assert line.endswith(f"{source}: its weights are not finite: tensor model.2.m.0.conv1.conv.weight holds NaN or "
                         f"infinite values (a training run that diverged, or a damaged file); fuse a checkpoint whose "
                         f"weights are finite, such as an earlier epoch's")
    assert [p.name for p in tmp_path.iterdir()] == ["nan.pt"]


def test_fuse_refuses_image_sizes_out_of_bounds_before_allocating_anything(cli, best, trained_checkpoint,
                                                                          tmp_path):
    line = one_line_error(cli("fuse", best, "--imgsz", "0"), "fuse")
    assert line.endswith("error: --imgsz: image size must be from 32 to 2048 pixels (one side, or [height, width]), "
                         "got 0")
    huge = edited(trained_checkpoint, tmp_path / "huge.pt", lambda ckpt, model: ckpt["train_args"].update(imgsz=100000))
    line = one_line_error(cli("fuse", huge), "fuse")  # 30 GB of activations if checked
    assert line.endswith(f"error: {huge}: its train_args imgsz: image size must be from 32 to 2048 pixels (one side, "
                         f"or [height, width]), got 100000; pass --imgsz N (imgsz=N in Python) to check the fused "
                         f"model at another size")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "huge.pt"]


def size(path: Path) -> int:
    """The size of ``path``; 0 if it is gone (the empty file that tests whether the folder is writable)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def wait_for_partial(process: subprocess.Popen, folder: Path) -> Path:
    """Return the temporary file ``process`` is writing into ``folder``, once it holds data."""
    while process.poll() is None:
        written = [p for p in folder.glob(f"{PARTIAL_PREFIX}.*.pt") if size(p)]
        if written:
            return written[0]
        time.sleep(0.002)
    pytest.fail(f"the command ended ({process.returncode}) before writing: {process.communicate()}")


def start_fuse(best: Path) -> subprocess.Popen:
    """Start ``fuse`` on ``best`` as ``run_fresh`` would, without waiting for it."""
    env = {**os.environ, "YOLOV8_EFFICIENTREP_HOOK": "1"}
    return subprocess.Popen([COMMAND, "fuse", str(best)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.mark.slow
def test_sigterm_during_the_write_leaves_no_partial_file(best):
    before = best.read_bytes()
    process = start_fuse(best)
    wait_for_partial(process, best.parent)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    assert stderr.strip() == "yolov8-efficientrep fuse: stopped by SIGTERM; the file being written was removed"
    assert best.read_bytes() == before and [p.name for p in best.parent.iterdir()] == ["best.pt"]


@pytest.mark.slow
def test_what_a_killed_run_left_stays_named_as_partial_and_a_later_run_works_beside_it(run_fresh, best):
    process = start_fuse(best)
    partial = wait_for_partial(process, best.parent)
    process.kill()  # SIGKILL: nothing runs on the way out
    process.communicate(timeout=60)
    assert partial.exists() and partial.name.startswith(PARTIAL_PREFIX) and partial.suffix == ".pt"
    run_fresh(COMMAND, "fuse", best)  # no name-based clean-up: a file this run did not create is not its to delete
    assert sorted(p.name for p in best.parent.iterdir()) == sorted([partial.name, "best-fused.pt", "best.pt"])


def test_import_yolov6_errors_are_one_line_too(cli, best, tmp_path):
    line = one_line_error(cli("import-yolov6", best, "-o", tmp_path / "out.pt"), "import-yolov6")
    assert f"error: {best} is an Ultralytics checkpoint, not a YOLOv6 one" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_traceback_shows_where_an_error_happened(run_fresh, tmp_path):
    result = run_fresh(COMMAND, "fuse", tmp_path / "none.pt", "--traceback", check=False)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr and "in _check_source" in result.stderr


def test_an_unexpected_error_is_one_line_saying_how_to_see_it():
    assert describe(RuntimeError("shape mismatch\nin layer 3"), "fuse") == (
        "yolov8-efficientrep fuse: unexpected error (RuntimeError: shape mismatch in layer 3); this is a bug: run the "
        "same command with --traceback to see where it happened, and report it")
    assert describe(AssertionError(), "demo").startswith(
        "yolov8-efficientrep demo: unexpected error (AssertionError with no message); this is a bug")


def test_help_shows_plain_text(run_fresh):
    result = run_fresh(COMMAND, "--help")
    assert "``" not in result.stdout
    assert "The 'yolov8-efficientrep' command (also 'python -m yolov8_efficientrep')" in " ".join(result.stdout.split())


def test_version_names_the_package_ultralytics_and_torch(run_fresh):
    result = run_fresh(COMMAND, "--version")
    assert result.stdout.strip() == (f"yolov8-efficientrep {yolov8_efficientrep.__version__} "
                                     f"(ultralytics {ultralytics.__version__}, torch {torch.__version__})")
