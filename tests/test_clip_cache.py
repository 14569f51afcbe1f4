"""preprocessing.clip_cache: a frame whose bytes changed is noticed whatever its size and
name; one whose time changed but not its bytes (a copied database) is not recomputed; a
cached clip is read back only under the options it was computed with."""
import os

import pytest

from pipeline_helpers import CORRUPT, OPTIONS
from preprocessing import clip_cache
from preprocessing.clip_cache import cache_path, clip_stamp, frames_seen, frames_unchanged, read_cache
from preprocessing.clip_chain import Options
from preprocessing.loaders import load_databases


@pytest.fixture
def frames(tmp_path):
    paths = []
    for n in range(3):
        p = tmp_path / f"img{n}.bmp"
        p.write_bytes(bytes([n]) * 1000)
        paths.append(str(p))
    return paths


def test_unchanged_frames_are_trusted_by_their_time_without_reading(frames, monkeypatch):
    seen = frames_seen(frames)
    monkeypatch.setattr(clip_cache, "frame_hash", lambda p: pytest.fail("read " + p))
    assert frames_unchanged(frames, seen)


def test_same_size_other_bytes_is_a_change(frames):
    """BMP frames replaced by their mirror images (same name, same size) are not taken as
    cached: the stamp holds each frame's hash, not only its name and size."""
    seen = frames_seen(frames)
    with open(frames[1], "r+b") as f:
        f.seek(500)
        f.write(b"\xff")
    assert os.path.getsize(frames[1]) == 1000
    assert not frames_unchanged(frames, seen)


def test_a_change_that_keeps_the_time_is_trusted(frames):
    """The documented limit: bytes changed with the modification time set back (touch -r,
    rsync -t of other contents) are not read again."""
    seen = frames_seen(frames)
    st = os.stat(frames[1])
    with open(frames[1], "r+b") as f:
        f.write(b"\xff")
    os.utime(frames[1], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert frames_unchanged(frames, seen)


def test_new_times_same_bytes_is_no_change(frames):
    seen = frames_seen(frames)
    for p in frames:
        os.utime(p, ns=(1, 10 ** 18))
    assert frames_unchanged(frames, seen)


def test_a_missing_frame_or_another_count_is_a_change(frames):
    seen = frames_seen(frames)
    assert not frames_unchanged(frames[:2], seen)
    assert not frames_unchanged(frames, "not a list")
    os.remove(frames[2])
    assert not frames_unchanged(frames, seen)
    assert frames_seen(frames)[2] == [-1, ""]


def test_frame_hash_reads_the_whole_file(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"x" * (3 << 20) + b"1")          # past the 1 MiB read size
    b.write_bytes(b"x" * (3 << 20) + b"2")
    assert clip_cache.frame_hash(str(a)) != clip_cache.frame_hash(str(b))
    assert len(clip_cache.frame_hash(str(a))) == 32


def test_changed_option_invalidates_the_cache(first, roots):
    clips, _ = load_databases(roots[0])
    cf = cache_path(os.path.join(first[0], "cache"), clips[0])
    assert read_cache(cf, clip_stamp(clips[0], OPTIONS), clips[0].frames)["included"]
    for changed in (Options(face_box=(0, 0, 48, 48), tol=0.03, interp="linear", sparsity=None),
                    Options(face_box=(0, 0, 48, 48), tol=0.03),
                    Options(face_box=(0, 0, 48, 48), tol=0.03, sparsity=0.3),
                    Options(face_box=(0, 0, 40, 40), tol=0.03, sparsity=None)):
        assert read_cache(cf, clip_stamp(clips[0], changed), clips[0].frames) is None
    # An excluded clip's reason is cached too, so a rerun does not redo it.
    bad = next(c for c in clips if (c.subject, c.clip) == CORRUPT[:2])
    cached = read_cache(cache_path(os.path.join(first[0], "cache"), bad), clip_stamp(bad, OPTIONS), bad.frames)
    assert cached["included"] is False and cached["reason"].startswith("unreadable frame")
