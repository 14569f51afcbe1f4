"""The preprocessing run that several test files read: fake CASME II and SAMM copies (64x48
frames without faces, so a user face box is given; one CASME II frame is corrupt) run through
the whole pipeline once with a loose RPCA tolerance.

conftest.py's session fixtures `roots` (the databases) and `first` (the run) build them once
for the whole session; tests that write into the run's folder work on a copy (copy_run).
Used by test_pipeline.py, test_manifest.py, test_contact_sheet.py, test_cli.py,
test_clip_chain.py and test_clip_cache.py.
"""
import os
import shutil

from preprocessing.clip_chain import Options
from preprocessing.layout import DataFolder
from preprocessing.manifest import read_manifest

# Subject | Filename | onset | apex | offset | AUs | emotion: every class, four subjects.
CASME2_ROWS = [
    (1, "EP02_01f", 10, 14, 22, 12, "happiness"),
    (1, "EP03_02", 5, 9, 16, "4+7", "disgust"),
    (2, "EP09_01", 5, 10, 18, "1+2", "surprise"),
    (2, "EP10_02", 8, 12, 20, 14, "others"),
    (3, "EP01_01", 3, 6, 12, 4, "repression"),
    (3, "EP04_03", 20, 25, 33, "6+12", "happiness"),
    (4, "EP05_01", 2, 5, 11, 25, "surprise"),
    (4, "EP06_02", 7, 10, 15, "?", "others"),      # one of its frames is corrupt
]
CORRUPT = ("casme2/sub04", "EP06_02", 12)
# Loose RPCA and a fixed lambda (no search per clip): seconds, not minutes.
OPTIONS = Options(face_box=(0, 0, 48, 48), tol=0.03, sparsity=None)
AUGMENT = ("flip", "rot+5")
CLI_ARGS = ["--n-folds", "2", "--face-box", "0,0,48,48", "--rpca-tol", "0.03", "--lam", "standard",
            "--augment", "flip,rot5", "--workers", "1", "--no-progress"]


def copy_run(first, tmp_path, name="copy"):
    dst = str(tmp_path / name)
    shutil.copytree(first[0], dst)
    return dst


def manifest_of(out):
    return read_manifest(os.path.join(out, "manifest.csv"))


def cache_file_of(out, row):
    """The clip cache file of a manifest row of the data folder `out`."""
    from preprocessing.clip_cache import cache_path

    class Clip:     # enough of a Clip for cache_path
        database, subject, clip = row["database"], row["subject"], row["clip"]
    return cache_path(DataFolder(out).cache_dir, Clip)
