"""copickfs's copick classes and the precomputed FileAccessor with S3 roots (moto's server)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from copick_project import RUN, TOMO, VS, config, write_content
from copickfs.copick import CopickRootFSSpec
from copickfs.precomputed import FileAccessor
from s3server import S3Server


def _upload(s3: S3Server, local: Path, bucket: str, prefix: str) -> None:
    fs = s3.filesystem()
    for path in local.rglob("*"):
        if path.is_file():
            fs.pipe_file(f"{bucket}/{prefix}/{path.relative_to(local).as_posix()}", path.read_bytes())


def test_copick_with_s3_static_and_local_overlay(s3: S3Server, tmp_path: Path) -> None:
    content = write_content(tmp_path / "built", seed=3)
    bucket = s3.new_bucket()
    _upload(s3, tmp_path / "built", bucket, "static")
    (tmp_path / "overlay").mkdir()
    root = CopickRootFSSpec(config(tmp_path / "overlay", None, static_root=f"s3://{bucket}/static",
                                   static_fs_args=s3.options()))
    run = root.get_run(RUN)
    assert run is not None and [r.name for r in root.runs] == [RUN]
    tomogram = run.get_voxel_spacing(VS).get_tomogram(TOMO)
    np.testing.assert_array_equal(tomogram.numpy(), content.tomogram)
    picks = run.get_picks("ribosome")[0]
    np.testing.assert_allclose(picks.numpy()[0], content.positions)
    assert picks.read_only  # the static copy
    mine = run.new_picks("ribosome", "9")
    mine.from_numpy(content.positions[:2])
    assert json.loads((tmp_path / "overlay" / "ExperimentRuns" / RUN / "Picks" / "me_9_ribosome.json")
                      .read_text())["points"]
    keys = s3.filesystem().find(bucket)
    assert all(k.startswith(f"{bucket}/static/") for k in keys) and not any("me_9" in k for k in keys)


def test_copick_with_local_static_and_s3_overlay(s3: S3Server, tmp_path: Path) -> None:
    content = write_content(tmp_path / "static", seed=4)
    bucket = s3.new_bucket()
    root = CopickRootFSSpec(config(f"s3://{bucket}/overlay", tmp_path / "static",  # type: ignore[arg-type]
                                   overlay_fs_args=s3.options()))
    run = root.get_run(RUN)
    np.testing.assert_array_equal(run.get_voxel_spacing(VS).get_tomogram(TOMO).numpy(), content.tomogram)
    mine = run.new_picks("ribosome", "9")
    mine.from_numpy(content.positions)
    seg = run.new_segmentation(VS, "membrane", "9")
    seg.from_numpy(content.segmentation)
    fs = s3.filesystem()
    assert fs.exists(f"{bucket}/overlay/ExperimentRuns/{RUN}/Picks/me_9_ribosome.json")
    fresh = CopickRootFSSpec(config(f"s3://{bucket}/overlay", tmp_path / "static",  # type: ignore[arg-type]
                                    overlay_fs_args=s3.options()))
    again = fresh.get_run(RUN)
    np.testing.assert_allclose(again.get_picks("ribosome", user_id="me", session_id="9")[0].numpy()[0],
                               content.positions)
    np.testing.assert_array_equal(again.get_segmentations(user_id="me", session_id="9")[0].numpy(),
                                  content.segmentation)


def test_file_accessor_over_s3(s3: S3Server) -> None:
    bucket = s3.new_bucket()
    info = {"type": "image", "data_type": "uint8", "num_channels": 1, "scales": [
        {"key": "1_1_1", "size": [8, 8, 8], "resolution": [1, 1, 1], "voxel_offset": [0, 0, 0],
         "chunk_sizes": [[8, 8, 8]], "encoding": "raw"}]}
    options = s3.options()
    writer = FileAccessor(f"s3://{bucket}/pyr", flat=True, gzip=False, **options)
    writer.store_file("info", json.dumps(info).encode(), mime_type="application/json")
    chunk = bytes(range(256)) * 2
    writer.store_chunk(chunk, "1_1_1", (0, 8, 0, 8, 0, 8))
    reader = FileAccessor(f"s3://{bucket}/pyr", **options)  # nested + gzip by default: finds the flat one
    assert reader.fetch_chunk("1_1_1", (0, 8, 0, 8, 0, 8)) == chunk
    assert json.loads(reader.fetch_file("info")) == info
    assert s3.filesystem().exists(f"{bucket}/pyr/1_1_1/0-8_0-8_0-8")
