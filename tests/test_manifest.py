"""preprocessing.manifest: manifest.csv's columns and rows, one per clip, with the reason
a clip was excluded (read from the preprocessing run that conftest.py's `first` fixture makes
once per session)."""
import os

import numpy as np
import pytest

from pipeline_helpers import CORRUPT, manifest_of
from preprocessing.loaders import load_databases
from preprocessing.manifest import MANIFEST_COLUMNS


def test_manifest_rows_and_exclusion_reason(first, roots):
    out = first[0]
    rows = manifest_of(out)
    clips, _ = load_databases(roots[0])
    assert tuple(rows[0].keys()) == MANIFEST_COLUMNS
    assert len(rows) == len(clips) == 16
    for i, (row, clip) in enumerate(zip(rows, clips)):
        assert int(row["index"]) == i
        assert (row["database"], row["subject"], row["clip"]) == (clip.database, clip.subject, clip.clip)
        assert int(row["label"]) == clip.label and int(row["n_frames"]) == len(clip.frames)
        assert row["au_set"] == "+".join(map(str, sorted(clip.au_set)))
        if (clip.subject, clip.clip) == CORRUPT[:2]:
            assert row["included"] == "0" and row["group"] == "" and row["rpca_iterations"] == ""
            assert row["face"] == ""
            assert row["reason"].startswith(f"unreadable frame {roots[1]}")
        else:
            assert row["included"] == "1" and row["group"] in ("1", "2") and row["reason"] == ""
            assert int(row["rpca_iterations"]) > 0 and int(row["rpca_rank"]) >= 1
            assert 0 < float(row["rpca_nnz_share"]) < 1
            assert float(row["rpca_lambda"]) == pytest.approx(1 / np.sqrt(112 * 112), rel=1e-5)
            assert "box given by the user" in row["notes"] and row["face"] == "user"
    # The sheet's own warnings reach the manifest (SAMM 028_4_1: apex after offset).
    samm = {r["clip"]: r for r in rows}
    assert "clamped" in samm["028_4_1"]["notes"]
    skipped = open(os.path.join(out, "skipped.csv")).read().splitlines()
    assert skipped == ["database,subject,clip,reason,source"]
