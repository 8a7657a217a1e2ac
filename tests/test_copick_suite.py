"""copick 1.31's own filesystem tests, run against copickfs's classes.

copick's sdist (from PyPI, cached under ~/.cache/copickfs-tests or $COPICKFS_TEST_CACHE)
ships ``tests/test_filesystem.py``. It runs here in a pytest subprocess whose ``copick``
is `copick_shim` (copickfs's classes under copick's names) and whose conftest is
`copick_suite_conftest.py` (the two local cases; the exclusions, each with its reason).
The corpus is copick's published ``sample_project.zip`` when one is in the cache
(``$COPICK_TEST_DATA_CACHE`` or the test cache; it is not downloaded), else the stand-in
of `copick_corpus.py`.

Skipped only when the sdist cannot be fetched, which the skip message says.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

import copick_corpus

COPICK_SPEC = "copick==1.31.*"
CACHE = Path(os.environ.get("COPICKFS_TEST_CACHE", Path.home() / ".cache" / "copickfs-tests"))
SDIST_TESTS = CACHE / "copick-1.31-tests"
CORPUS_ARCHIVE, CORPUS_MD5 = "sample_project.zip", "fd2be0b41c2d82f0cddcbe693d9858d4"
HERE = Path(__file__).parent
SUITE_FILES = ("test_filesystem.py", "croissant_helpers.py")


@pytest.fixture(scope="session")
def copick_tests() -> Path:
    """copick's test files from its sdist; fetched once and reused across runs."""
    done = SDIST_TESTS / ".fetched"
    if not done.is_file():
        shutil.rmtree(SDIST_TESTS, ignore_errors=True)
        with tempfile.TemporaryDirectory() as scratch:
            result = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
                                     ":all:", COPICK_SPEC, "-d", scratch], capture_output=True, text=True,
                                    timeout=600)
            archives = list(Path(scratch).glob("copick-*.tar.gz"))
            if result.returncode != 0 or not archives:
                tail = " ".join(result.stderr.strip().splitlines()[-2:])
                pytest.skip(f"cannot download the {COPICK_SPEC} sdist: {tail}")
            SDIST_TESTS.mkdir(parents=True, exist_ok=True)
            with tarfile.open(archives[0]) as tar:
                for member in tar.getmembers():
                    if member.isfile() and Path(member.name).parent.name == "tests" \
                            and Path(member.name).name in SUITE_FILES:
                        source = tar.extractfile(member)
                        assert source is not None
                        (SDIST_TESTS / Path(member.name).name).write_bytes(source.read())
        done.write_text(COPICK_SPEC + "\n")
    return SDIST_TESTS


def published_corpus() -> Path | None:
    """copick's own corpus archive, when a cache holds it with the digest copick 1.31 expects."""
    for directory in (os.environ.get("COPICK_TEST_DATA_CACHE"), CACHE / "copick-corpus"):
        if directory and (Path(directory) / CORPUS_ARCHIVE).is_file():
            archive = Path(directory) / CORPUS_ARCHIVE
            if hashlib.md5(archive.read_bytes()).hexdigest() == CORPUS_MD5:
                return archive
    return None


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bool]:
    """(directory holding sample_project/, sample_overlay/ and the configs, whether it is the stand-in)."""
    destination = tmp_path_factory.mktemp("corpus")
    archive = published_corpus()
    if archive is None:
        return copick_corpus.build(destination), True
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(destination)
    found = next(destination.rglob("filesystem.json")).parent
    return found, False


def run_suite(copick_tests: Path, corpus: tuple[Path, bool], scratch: Path) -> ET.Element:
    for name in SUITE_FILES:
        shutil.copy(copick_tests / name, scratch / name)
    shutil.copy(HERE / "copick_suite_conftest.py", scratch / "conftest.py")
    env = {**os.environ, "COPICKFS_SUITE_CORPUS": str(corpus[0]), "COPICKFS_SUITE_STAND_IN": str(int(corpus[1])),
           "PYTHONPATH": os.pathsep.join([str(HERE / "copick_shim"), str(scratch),
                                          os.environ.get("PYTHONPATH", "")])}
    report = scratch / "report.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                    f"--junitxml={report}", "--rootdir", str(scratch), str(scratch / "test_filesystem.py")],
                   cwd=scratch, env=env, capture_output=True, text=True, timeout=1800)
    return ET.parse(report).getroot()


def test_copick_filesystem_suite_passes_on_copickfs(copick_tests: Path, corpus: tuple[Path, bool],
                                                   tmp_path: Path) -> None:
    root = run_suite(copick_tests, corpus, tmp_path)
    cases = list(root.iter("testcase"))
    failed = []
    outcome = {"passed": 0, "skipped": 0, "xfailed": 0}
    for case in cases:
        problem = next((child for child in case if child.tag in ("failure", "error")), None)
        skipped = case.find("skipped")
        if problem is not None:
            first = (problem.get("message") or "").splitlines()[0][:200] if problem.get("message") else ""
            failed.append(f"{case.get('name')}: {first}")
        elif skipped is not None:
            outcome["xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"] += 1
        else:
            outcome["passed"] += 1
    assert len(cases) >= 136, f"only {len(cases)} of copick's tests were collected"
    assert not failed, f"{len(failed)} of copick's {len(cases)} tests fail ({outcome}):\n" + "\n".join(failed)
