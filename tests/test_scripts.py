"""The operator scripts in scripts/: each explains itself with --help (installing nothing),
install-service.sh refuses clearly without root, build-sample.sh builds a mountable project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from copickfs import sample
from copickfs.config import check_roots, load_config

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p for p in (REPO / "scripts").iterdir() if p.is_file())


def run(*argv: str, user: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user else []
    return subprocess.run([*prefix, "bash", *argv], capture_output=True, text=True, timeout=600,
                          cwd=cwd, stdin=subprocess.DEVNULL)


def test_there_are_the_scripts_an_operator_needs() -> None:
    names = {p.name for p in SCRIPTS}
    assert {"common.sh", "demo.sh", "test.sh", "install-service.sh", "build-sample.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_script_answers_help(script: Path, flag: str) -> None:
    result = run(str(script), flag)
    assert result.returncode == 0, result.stderr
    usage = [line for line in result.stdout.splitlines() if line.startswith("Usage:")]
    assert usage, f"no usage line in:\n{result.stdout}"
    if script.name != "common.sh":  # sourced, not run
        assert f"scripts/{script.name}" in usage[0]
    assert "Installing" not in result.stderr, "--help must install nothing"


def test_install_service_refuses_without_root(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("running the script as another user needs root and setpriv")
    config = tmp_path / "project.json"
    config.write_text('{"config_type": "filesystem", "overlay_root": "/tmp"}')
    result = run(str(REPO / "scripts/install-service.sh"), "project", str(config), user="65534")
    assert result.returncode == 1
    assert "must run as root" in result.stderr


def test_install_service_rejects_bad_arguments_before_touching_anything(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    config = tmp_path / "project.json"
    config.write_text('{"config_type": "filesystem", "overlay_root": "/nonexistent/overlay"}')
    script = str(REPO / "scripts/install-service.sh")
    cases = {
        ("--root", str(root), "two words", str(config)): "NAME",
        ("--root", str(root), "project", str(tmp_path / "missing.json")): "no such file",
        ("--root", str(root), "project", str(config), "relative/mnt"): "absolute",
        ("--root", str(root), "project", str(config)): "overlay_root",  # checked as copickfs mount checks
    }
    for argv, message in cases.items():
        result = run(script, *argv)
        assert result.returncode != 0, argv
        assert message in result.stderr, (argv, result.stderr)
    assert not any(root.rglob("*.service")) and not any(root.rglob("*.json"))
    assert run(script).returncode == 2


def test_install_service_makes_relative_roots_absolute(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "overlay").mkdir()
    (tmp_path / "static").mkdir()
    config = tmp_path / "project.json"
    config.write_text(json.dumps({"config_type": "filesystem", "overlay_root": "overlay",
                                  "static_root": "static", "pickable_objects": [], "name": "p"}))
    result = run(str(REPO / "scripts/install-service.sh"), "--root", str(root), "p", "project.json",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    installed = json.loads((root / "etc/copickfs/p.json").read_text())
    assert installed["overlay_root"] == str(tmp_path / "overlay")
    assert installed["static_root"] == str(tmp_path / "static")
    assert installed["name"] == "p" and installed["pickable_objects"] == []
    assert not (root / "etc/copickfs/p.env").exists(), "no MOUNTPOINT: the unit's default"
    assert "systemctl enable copickfs@p.service" in result.stdout


def test_build_sample_makes_a_project_and_a_config(tmp_path: Path) -> None:
    result = run(str(REPO / "scripts/build-sample.sh"), str(tmp_path / "sample"))
    assert result.returncode == 0, result.stderr
    base = tmp_path / "sample"
    config = load_config(base / "config.json")
    check_roots(config)
    assert config.static_root == str(base / "static") and config.overlay_root == str(base / "overlay")
    assert (base / "static" / sample.PICKS).is_file()
    assert not any((base / "overlay").iterdir())
    again = run(str(REPO / "scripts/build-sample.sh"), str(base))
    assert again.returncode == 0 and "Kept" in again.stdout
