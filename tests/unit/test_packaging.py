"""`pip install .` outside the checkout: the wheel holds every package and data file, and its
`tenantflow` runs from the wheel alone (the checkout not on the path)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGES = ("flows", "apps", "controller", "topology")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of the checkout's files (setuptools writes build/ into the source tree, and a
    stale build/ there could put deleted modules into the wheel)."""
    out = tmp_path_factory.mktemp("wheel")
    src = tmp_path_factory.mktemp("src")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
                   check=True, timeout=300, cwd=src)
    [whl] = out.glob("tenantflow-*.whl")
    return whl


def test_wheel_holds_every_module_and_entry_point(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for pkg in PACKAGES:
        for py in (ROOT / pkg).rglob("*.py"):
            rel = py.relative_to(ROOT).as_posix()
            assert rel in names, f"{rel} missing from the wheel"
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry).decode()
    assert "tenantflow = topology.cli.main:main" in text and "controller.config:list_opts" in text


def test_tenantflow_runs_from_the_wheel_alone(wheel, tmp_path):
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    deps = sysconfig.get_paths()["purelib"]          # the venv's dependencies, without its .pth files
    env = {"PYTHONPATH": f"{tmp_path / 'site'}:{deps}", "PATH": "/usr/bin:/bin"}
    for args in (["--help"], ["serve", "--help"], ["status", "--help"], ["trace", "--help"]):
        res = subprocess.run([sys.executable, "-S", "-m", "topology.cli.main", *args], capture_output=True,
                             text=True, timeout=60, env=env, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert "usage:" in res.stdout
    where = subprocess.run([sys.executable, "-S", "-c", "import topology; print(topology.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path).stdout
    assert str(tmp_path / "site") in where, where   # not the checkout
