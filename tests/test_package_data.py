"""Package data: what the code reads ships in the wheel, and a tlm installed from it (not
editable, run away from the checkout) finds it: the connect-four preset measures its
student on the solved positions that ship with it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from arena.positions import shipped_positions

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("arena", "teachers", "students", "distill", "scripts")
FILES = ("setup.cfg", "pyproject.toml", "README.md")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built from a copy (the checkout gets no build files)."""
    src = tmp_path_factory.mktemp("src")
    for name in FILES:
        shutil.copy(ROOT / name, src / name)
    for name in PACKAGES:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", str(src), "-w", str(out)], check=True, capture_output=True,
                   timeout=300)
    (found,) = out.glob("tlm-*.whl")
    return found


def test_the_wheel_carries_the_data_the_code_reads(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "arena/data/connect_four_solved.csv" in names
    assert {f"arena/data/{name}.csv" for name in shipped_positions()} <= names
    assert {"arena/data/panel_connect_four.json", "arena/data/panel_tictactoe.json"} <= names
    assert {f"teachers/data/zoo/connect_four/{name}" for name in (
        "config.json", "model.safetensors", "provenance.json")} <= names


WHERE = """
import json
import arena
from arena.positions import positions_path
from distill.presets import config_with_preset
from arena import make_agent
config = config_with_preset(game="connect_four", out="unused")
zoo = make_agent("zoo:connect_four,sims=8", "connect_four")
print(json.dumps({"arena": arena.__file__, "preset": str(config.positions),
                  "file": str(positions_path(config.positions)), "zoo": zoo.name}))
"""


def test_an_installed_tlm_measures_the_connect_four_preset_on_its_shipped_positions(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True,
                   timeout=300)
    site = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    # The dependencies come from this environment's site-packages as a plain path entry:
    # its .pth files (this checkout's editable install among them) are not read from there.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    where = subprocess.run([str(python), "-I", "-c", WHERE], cwd=work, env=env,
                           capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr[-2000:]
    found = json.loads(where.stdout)
    assert Path(found["arena"]).is_relative_to(site)
    assert found["preset"] == "connect_four_solved"
    assert Path(found["file"]) == site / "arena" / "data" / "connect_four_solved.csv"
    assert Path(found["file"]).is_file()
    assert found["zoo"] == "zoo:connect_four,sims=8"  # the shipped agent, found and checked
    # The installed command: the preset's held-out measure is in the report.
    done = subprocess.run(
        [str(venv / "bin" / "tlm"), "distill", "--game", "connect_four", "--mix", "student=1",
         "--budget-games", "4", "--games-per-round", "4", "--steps-per-round", "1",
         "--eval-games", "2", "--out", "runs/c4"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((work / "runs" / "c4" / "report.json").read_text())
    assert report["config"]["positions"] == "connect_four_solved"
    assert 0 <= report["final"]["solved_optimal"] <= 1
