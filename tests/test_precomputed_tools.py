"""neuroglancer-scripts' command-line tools writing through the mount, and a plain static web
server serving a nested+gzip pyramid to a flat-layout reader (what Neuroglancer requests).
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nibabel
import numpy as np
import pytest
from mounting import mounted
from neuroglancer_scripts.http_accessor import HttpAccessor
from neuroglancer_scripts.precomputed_io import get_IO_for_existing_dataset
from pyramids import Roots, files_below

from copickfs.precomputed import FileAccessor

BIN = Path(sys.executable).parent


@pytest.fixture
def proots(tmp_path: Path) -> Iterator[Roots]:
    roots = Roots(tmp_path)
    yield roots
    roots.check()


def make_volume(path: Path) -> np.ndarray:
    volume = np.random.default_rng(7).integers(0, 256, size=(40, 36, 20), dtype=np.uint8)
    nibabel.save(nibabel.Nifti1Image(volume, np.diag([0.5, 0.5, 0.5, 1])), str(path))
    return volume


def run_tool(*argv: str) -> None:
    result = subprocess.run([str(BIN / argv[0]), *argv[1:]], check=False, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"{argv}: {result.stderr[-2000:]}"


def build_with_tools(volume: Path, dest: Path, *storage: str) -> None:
    """neuroglancer-scripts' documented pipeline: info, full resolution, lower scales."""
    run_tool("volume-to-precomputed", "--generate-info", str(volume), str(dest))
    run_tool("generate-scales-info", "--target-chunk-size", "16", str(dest / "info_fullres.json"), str(dest))
    run_tool("volume-to-precomputed", *storage, str(volume), str(dest))
    run_tool("compute-scales", *storage, str(dest))


def all_chunks(info: dict) -> Iterator[tuple[str, tuple[int, ...]]]:
    for scale in info["scales"]:
        size, (chunk,) = scale["size"], scale["chunk_sizes"]
        for x0 in range(0, size[0], chunk[0]):
            for y0 in range(0, size[1], chunk[1]):
                for z0 in range(0, size[2], chunk[2]):
                    yield scale["key"], (x0, min(x0 + chunk[0], size[0]), y0, min(y0 + chunk[1], size[1]),
                                         z0, min(z0 + chunk[2], size[2]))


@pytest.mark.parametrize("storage", [(), ("--flat", "--no-gzip")], ids=["nested-gz", "flat-raw"])
def test_a_pyramid_written_through_the_mount_by_the_tools(proots: Roots, tmp_path: Path, storage) -> None:
    volume = make_volume(tmp_path / "volume.nii.gz")
    build_with_tools(tmp_path / "volume.nii.gz", tmp_path / "reference", *storage)  # on a plain directory
    proots.seal()
    with mounted(proots.config, proots.mountpoint):
        (proots.mountpoint / "pyr").mkdir()
        build_with_tools(tmp_path / "volume.nii.gz", proots.mountpoint / "pyr", *storage)
    assert files_below(proots.overlay / "pyr") == files_below(tmp_path / "reference")  # as the tools wrote them
    info = json.loads((proots.overlay / "pyr" / "info").read_text())
    assert len(info["scales"]) >= 2
    ours, reference = FileAccessor(proots.overlay / "pyr"), FileAccessor(tmp_path / "reference")
    count = 0
    for key, coords in all_chunks(info):
        assert ours.fetch_chunk(key, coords) == reference.fetch_chunk(key, coords), (key, coords)
        count += 1
    assert count == len([n for n in files_below(tmp_path / "reference") if "/" in n])
    full = info["scales"][0]["key"]  # full resolution: the volume's own voxels, x fastest
    x0, x1, y0, y1, z0, z1 = 16, 32, 16, 32, 16, 20
    assert ours.fetch_chunk(full, (x0, x1, y0, y1, z0, z1)) == volume[x0:x1, y0:y1, z0:z1].tobytes(order="F")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def test_a_static_web_server_serves_a_nested_gzip_pyramid_under_flat_names(proots: Roots, tmp_path: Path) -> None:
    volume = make_volume(tmp_path / "volume.nii.gz")
    build_with_tools(tmp_path / "volume.nii.gz", proots.static / "pyr")  # nested + gzip, the tools' default
    assert not any(n.endswith("_0-16") for n in files_below(proots.static / "pyr"))
    proots.seal()
    with mounted(proots.config, proots.mountpoint):
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                   "--directory", str(proots.mountpoint)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}/pyr"
            deadline = time.monotonic() + 20
            while True:
                try:
                    info = json.loads(fetch(base + "/info"))
                    break
                except (urllib.error.URLError, ConnectionError):
                    assert time.monotonic() < deadline, "http.server did not answer"
                    time.sleep(0.1)
            full = info["scales"][0]["key"]
            fetched = 0
            for key, (x0, x1, y0, y1, z0, z1) in all_chunks(info):
                if key != full:
                    continue
                data = fetch(f"{base}/{key}/{x0}-{x1}_{y0}-{y1}_{z0}-{z1}")  # what Neuroglancer requests
                assert data == volume[x0:x1, y0:y1, z0:z1].tobytes(order="F"), (x0, y0, z0)
                fetched += 1
            assert fetched == 3 * 3 * 2
            gz = fetch(f"{base}/{full}/0-16_0-16_0-16.gz")
            assert gzip.decompress(gz) == volume[0:16, 0:16, 0:16].tobytes(order="F")
            with pytest.raises(urllib.error.HTTPError) as e:
                fetch(f"{base}/{full}/0-16_0-16")
            assert e.value.code == 404
            # neuroglancer-scripts' own HTTP reader asks for flat raw names only
            io = get_IO_for_existing_dataset(HttpAccessor(base))
            chunk = io.read_chunk(full, (16, 32, 0, 16, 0, 16))
            assert np.array_equal(chunk[0].T, volume[16:32, 0:16, 0:16])
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(server.pid, 9)
                server.wait()
