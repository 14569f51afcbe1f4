"""The synthetic CASME II-format database (the synthetic package)."""
import os
import re

import cv2
import numpy as np
import pytest
from openpyxl import load_workbook

import synthetic as S
from preprocessing.labels import classify, parse_aus

SMALL = dict(n_subjects=3, clips_per_subject=4, seed=7)


def _tree(root):
    """{relative path: bytes} of every file under root."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


def _rows(root):
    ws = load_workbook(os.path.join(root, S.SHEET_NAME)).active
    return ws, list(ws.iter_rows(values_only=True))


@pytest.fixture(scope="module")
def small_db(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthetic") / "db")
    # Without nuisances: the AU tests below measure what the AUs move, and nothing else.
    summary = S.generate(root, nuisances=S.NO_NUISANCES, **SMALL)
    return root, summary


def test_same_seed_same_bytes(small_db, tmp_path):
    root, summary = small_db
    again = S.generate(str(tmp_path / "again"), nuisances=S.NO_NUISANCES, **SMALL)
    assert not summary["skipped"] and not again["skipped"]
    a, b = _tree(root), _tree(str(tmp_path / "again"))
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []
    # No temporary folders left beside the database.
    assert sorted(os.listdir(tmp_path)) == ["again"]


def test_other_seed_differs(tmp_path):
    a = S.generate(str(tmp_path / "s1"), n_subjects=1, clips_per_subject=2, seed=1)
    b = S.generate(str(tmp_path / "s2"), n_subjects=1, clips_per_subject=2, seed=2)
    ta, tb = _tree(a["out_dir"]), _tree(b["out_dir"])
    assert ta[S.SHEET_NAME] != tb[S.SHEET_NAME]
    frames_a = sorted(v for k, v in ta.items() if k.endswith(".jpg"))
    frames_b = sorted(v for k, v in tb.items() if k.endswith(".jpg"))
    assert not set(frames_a) & set(frames_b)


def test_sheet_columns_and_cell_types(small_db):
    root, _ = small_db
    ws, rows = _rows(root)
    assert ws.max_column == 9
    assert rows[0] == ("Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
                       "Action Units", "Estimated Emotion")
    body = rows[1:]
    assert len(body) == 12
    slash = 0
    names = set()
    for subject, filename, blank1, onset, apex, offset, blank2, aus, emotion in body:
        assert type(subject) is int and 1 <= subject <= 3
        assert isinstance(filename, str) and re.fullmatch(r"EP\d\d_\d\df?", filename)
        assert (subject, filename) not in names
        names.add((subject, filename))
        assert blank1 is None and blank2 is None
        assert type(onset) is int and type(offset) is int and onset >= 1
        assert 30 <= offset - onset + 1 <= 60
        if apex == "/":
            slash += 1
        else:
            assert type(apex) is int and onset < apex < offset
        # Pure numbers are int cells as in the real sheet; the rest are '+'-joined text.
        if isinstance(aus, str):
            assert not aus.isdigit() and re.fullmatch(r"[LR]?\d+(\+[LR]?\d+)+|[LR]\d+", aus)
        else:
            assert type(aus) is int
        assert isinstance(emotion, str) and emotion
    assert slash == 1
    assert sorted(body, key=lambda r: (r[0], r[1])) == body


def test_frames_are_onset_to_offset_at_640x480(small_db):
    root, summary = small_db
    _, rows = _rows(root)
    total = 0
    for subject, filename, _, onset, apex, offset, _, _, _ in rows[1:]:
        d = os.path.join(root, S.FRAMES_DIR, "sub%02d" % subject, filename)
        assert sorted(os.listdir(d)) == sorted("img%d.jpg" % n for n in range(onset, offset + 1))
        total += offset - onset + 1
        for n in (onset, offset):
            img = cv2.imread(os.path.join(d, "img%d.jpg" % n))
            assert img is not None and img.shape == (480, 640, 3)
    assert summary["frames"] == total
    assert sorted(os.listdir(os.path.join(root, S.FRAMES_DIR))) == ["sub01", "sub02", "sub03"]


def test_cascades_find_one_face_and_both_eyes_on_every_onset(small_db):
    root, _ = small_db
    _, rows = _rows(root)
    faces_c = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    eyes_c = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye.xml")
    for subject, filename, _, onset, *_ in rows[1:]:
        path = os.path.join(root, S.FRAMES_DIR, "sub%02d" % subject, filename, "img%d.jpg" % onset)
        g = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        faces = faces_c.detectMultiScale(g, 1.1, 5, minSize=(60, 60))
        assert len(faces) == 1, path
        x, y, w, h = faces[0]
        eyes = eyes_c.detectMultiScale(g[y:y + h // 2, x:x + w], 1.1, 3)
        centres = [ex + ew / 2 for ex, ey, ew, eh in eyes]
        assert any(c < w / 2 for c in centres) and any(c >= w / 2 for c in centres), path


def test_apex_moves_the_aus_region_by_a_few_pixels_and_little_else(small_db):
    root, _ = small_db
    yy, xx = np.mgrid[0:S.HEIGHT, 0:S.WIDTH]
    faces = {s: S.subject_face(SMALL["seed"], s) for s in range(1, SMALL["n_subjects"] + 1)}
    for p in S.plan_database(**SMALL):
        face = faces[p.subject]
        d = S.clip_dir(root, p)
        onset = cv2.imread(os.path.join(d, "img%d.jpg" % p.onset), cv2.IMREAD_GRAYSCALE)
        apex = cv2.imread(os.path.join(d, "img%d.jpg" % p.apex), cv2.IMREAD_GRAYSCALE)
        mag = np.linalg.norm(cv2.calcOpticalFlowFarneback(onset, apex, None, 0.5, 3, 15, 3, 5, 1.2, 0), axis=2)
        # Where the written AUs act (the clip's pose moves the face by up to ~10 px).
        region = np.zeros(mag.shape, bool)
        for x, y, sig, _, _ in S.au_handles(face.points, face.a, p.aus, 1.0):
            region |= (xx - x) ** 2 + (yy - y) ** 2 < (2.5 * sig + 14) ** 2
        cx, cy = face.points["centre"]
        rest = (((xx - cx) / (1.1 * face.a)) ** 2 + ((yy - cy) / (1.1 * face.b)) ** 2 < 1) & ~region
        what = f"sub{p.subject:02d}/{p.filename} AUs {p.aus}"
        assert 1.5 < np.percentile(mag[region], 99) and mag[region].max() < 10, what
        assert np.percentile(mag[rest], 99) < 0.8, what


def test_blink_profile():
    rng = np.random.default_rng(0)
    for n in (30, 45, 60):
        p = S.blink_profile(n, rng)
        assert p.shape == (n,) and (p[:3] == 0).all() and p.min() >= 0 and p.max() <= 1
        shut = np.flatnonzero(p == 1)
        if shut.size:       # closes faster than it opens, as people blink
            assert shut[0] - np.flatnonzero(p > 0)[0] < np.flatnonzero(p > 0)[-1] - shut[-1] + 2


@pytest.mark.slow
def test_nuisances_carry_no_class_and_move_what_they_say(tmp_path):
    """A blink changes the eyes and little else; drift moves the whole face by pixels, not
    the AU region alone; the same seed gives the same bytes; the stamp records the sizes, and
    a database without nuisances keeps the stamp it had before they existed."""
    face = S.subject_face(7, 1)
    plan = S.plan_database(**SMALL)[0]
    noise = S.NoiseBank(7)

    def frames(**nz):
        return [f.astype(np.float64) for _, f in S.render_frames(face, plan, noise, nuisances=nz)]

    base = frames()
    blink = frames(blink=1.0)
    d = [np.abs(a - b).mean(axis=2) for a, b in zip(base, blink)]
    k = int(np.argmax([x.sum() for x in d]))
    assert d[0].max() == 0 and d[k].max() > 60                       # the lids, dark on white
    ys, xs = np.nonzero(d[k] > 20)
    eyes = [np.array(face.points["eye_" + s]) for s in "LR"]
    far = [min(np.hypot(x - e[0], y - e[1]) for e in eyes) for x, y in zip(xs, ys)]
    assert np.percentile(far, 95) < 4 * face.eye_w                   # ~10 px pose shift incl.
    drift = frames(drift_px=4.0, drift_deg=1.0)
    flow = cv2.calcOpticalFlowFarneback(
        cv2.cvtColor(drift[0].astype(np.uint8), cv2.COLOR_BGR2GRAY),
        cv2.cvtColor(drift[-1].astype(np.uint8), cv2.COLOR_BGR2GRAY),
        None, 0.5, 3, 15, 3, 5, 1.2, 0)
    still = cv2.calcOpticalFlowFarneback(
        cv2.cvtColor(base[0].astype(np.uint8), cv2.COLOR_BGR2GRAY),
        cv2.cvtColor(base[-1].astype(np.uint8), cv2.COLOR_BGR2GRAY),
        None, 0.5, 3, 15, 3, 5, 1.2, 0)
    cx, cy = face.points["centre"]
    sl = np.s_[int(cy - 60):int(cy + 60), int(cx - 60):int(cx + 60)]
    assert np.median(np.linalg.norm(flow[sl], axis=2)) > np.median(
        np.linalg.norm(still[sl], axis=2)) + 0.3
    flick = frames(flicker=2.0)
    shift = [float((a - b).mean()) for a, b in zip(flick, base)]
    assert max(abs(v) for v in shift) > 0.5 and max(abs(v) for v in shift) < 2.5

    small = dict(n_subjects=1, clips_per_subject=2, seed=5)
    a = S.generate(str(tmp_path / "a"), **small)
    b = S.generate(str(tmp_path / "b"), **small)
    ta, tb = _tree(a["out_dir"]), _tree(b["out_dir"])
    assert [k for k in ta if ta[k] != tb[k]] == []
    stamp = ta[S.STAMP_NAME].decode()
    assert '"nuisances"' in stamp and '"blink": 0.5' in stamp
    off = S.generate(str(tmp_path / "off"), nuisances=S.NO_NUISANCES, **small)
    assert '"nuisances"' not in _tree(off["out_dir"])[S.STAMP_NAME].decode()
    with pytest.raises(ValueError, match="unknown nuisances"):
        S.generate(str(tmp_path / "x"), nuisances={"sneeze": 1}, **small)
    with pytest.raises(ValueError, match="blink"):
        S.generate(str(tmp_path / "x"), nuisances={"blink": 2}, **small)
    assert S.main(["--out", str(tmp_path / "cli"), "--subjects", "1", "--clips-per-subject",
                   "1", "--no-nuisances"]) == 0
    assert '"nuisances"' not in _tree(str(tmp_path / "cli"))[S.STAMP_NAME].decode()
    assert S.main(["--out", str(tmp_path / "bad"), "--blink", "3"]) == 2


def test_neutral_start_and_end():
    prof = S.intensity_profile(40, 15, 3, 4)
    assert (prof[:4] == 0).all() and (prof[-5:] == 0).all()
    assert prof.argmax() == 15 and prof[15] == 1
    assert (np.diff(prof[3:16]) > 0).all() and (np.diff(prof[15:36]) < 0).all()
    with pytest.raises(ValueError):
        S.intensity_profile(10, 2, 3, 3)


def test_every_au_code_gets_its_class_by_exact_match():
    for label, choices in S.AU_CHOICES.items():
        for code, _, _ in choices:
            aus, warnings = parse_aus(int(code) if code.isdigit() else code)
            assert not warnings and classify(aus) == label, code


def test_default_database_has_every_class_for_ten_folds():
    plans = S.plan_database()
    assert len(plans) == 120 and len({p.subject for p in plans}) == 12
    counts = np.bincount([classify(parse_aus(p.au_cell)[0]) for p in plans], minlength=4)
    assert [p.label for p in plans] == [classify(parse_aus(p.au_cell)[0]) for p in plans]
    assert counts.min() >= 10, counts
    # Shares like the paper's Table 4: negative and others the big classes.
    assert set(np.argsort(counts)[2:]) == {S.NEGATIVE, S.OTHERS}, counts
    assert any(re.search(r"[LR]\d", p.aus) for p in plans)
    assert sum(p.apex_cell == "/" for p in plans) == 1
    for s in range(1, 13):
        names = [p.filename for p in plans if p.subject == s]
        assert len(names) == len(set(names)) == 10


def test_casme2_loader_reads_it(small_db):
    from preprocessing.loaders import load_database

    root, _ = small_db
    clips, skipped = load_database("casme2", root)
    assert skipped == [] or not skipped
    plans = {(f"casme2/sub{p.subject:02d}", p.filename): p for p in S.plan_database(**SMALL)}
    assert sorted((c.subject, c.clip) for c in clips) == sorted(plans)
    for c in clips:
        p = plans[(c.subject, c.clip)]
        assert c.label == p.label and (c.onset, c.offset) == (p.onset, p.offset)
        assert len(c.frames) == p.offset - p.onset + 1


def test_second_run_skips_and_foreign_folders_are_kept(small_db, tmp_path, capsys):
    root, _ = small_db
    before = {k: os.stat(os.path.join(root, k)).st_mtime_ns for k in _tree(root)}
    assert S.generate(root, nuisances=S.NO_NUISANCES, **SMALL)["skipped"]
    assert {k: os.stat(os.path.join(root, k)).st_mtime_ns for k in _tree(root)} == before

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        S.generate(str(foreign), n_subjects=1, clips_per_subject=1)
    assert (foreign / "notes.txt").read_text() == "keep me"

    out = str(tmp_path / "cli")
    args = ["--out", out, "--subjects", "1", "--clips-per-subject", "1", "--seed", "3"]
    assert S.main(args) == 0
    assert os.path.isfile(os.path.join(out, S.SHEET_NAME))
    assert S.main(args) == 0
    assert "skipped" in capsys.readouterr().out
    # Other parameters replace a database this module wrote; a killed run's temporary folder
    # (its process gone) is cleaned up.
    (tmp_path / ".cli.tmp-99999999").mkdir()
    assert S.main(args[:-1] + ["4"]) == 0
    with open(os.path.join(out, S.STAMP_NAME)) as f:
        assert '"seed": 4' in f.read()
    assert sorted(os.listdir(tmp_path)) == ["cli", "mine"]


def test_casme_format_is_read_by_the_casme_loader(tmp_path):
    """--format casme: Section A/B sheets and folders as the owners ship CASME; the CASME
    loader finds every planned clip with its frames, AUs and class."""
    from preprocessing.loaders import load_database
    root = str(tmp_path / "syn_casme")
    s = S.generate(root, fmt="casme", **SMALL)
    assert s["format"] == "casme" and s["clips"] == 12
    assert os.path.isfile(os.path.join(root, "CASME_A", "Section A", "Section A.xls"))
    assert os.path.isfile(os.path.join(root, "CASME_B", "Section B", "Section B.xls"))
    clips, skipped = load_database("casme", root)
    assert skipped == []
    got = {(c.subject, c.clip): c for c in clips}
    plans = S.plan_database(**SMALL)
    assert len(got) == len(plans)
    for p in plans:
        c = got["casme/sub%02d" % p.subject, S.casme_filename(p.filename)]
        assert (c.onset, c.offset, c.label) == (p.onset, p.offset, p.label)
        first = os.path.basename(c.frames[0])
        if p.subject <= 2:      # Section A: no padding
            assert first == f"{S.casme_filename(p.filename)}-{p.onset}.jpg"
            assert os.sep + "Section A" + os.sep in c.frames[0]
        else:
            assert first == f"{S.casme_filename(p.filename)}-{p.onset:03d}.jpg"
    with pytest.raises(ValueError, match="format"):
        S.generate(str(tmp_path / "x"), fmt="smic2", **SMALL)


def test_samm_and_smic_formats_are_read_by_their_loaders(tmp_path):
    """--format samm: SAMM's sheet (preamble, header) and grayscale 3-digit subject folders;
    --format smic: SMIC-HS's tree without a sheet, 8-bit BMP frames at 100 fps, no 'others'.
    Each loader finds every planned clip, and MEGC 2019's mapping gives the planned class."""
    from preprocessing import protocols
    from preprocessing.loaders import load_database
    megc = protocols.load_protocol("megc2019")
    plans = S.plan_database(**SMALL)
    paper_to_megc = {0: "positive", 1: "negative", 2: "surprise"}
    for fmt, db in (("samm", "samm"), ("smic", "smic-hs")):
        root = str(tmp_path / fmt)
        s = S.generate(root, fmt=fmt, **SMALL)
        clips, skipped = load_database(fmt, root)
        assert skipped == []
        want = [p for p in plans if fmt == "samm" or p.label != 3]
        assert s["clips"] == len(clips) == len(want)
        kept, dropped = protocols.apply(megc, clips)
        # SAMM is labelled by its emotion column (a 'repression' clip of class others is
        # Contempt there, so negative); SMIC by its folder, the planned class.
        expect = {}
        for p in want:
            if fmt == "samm":
                cls = megc.emotions["samm"][S.formats.SAMM_EMOTIONS[p.emotion].lower()]
                name = S.formats.samm_clip_name(p)
            else:
                cls, name = paper_to_megc[p.label], S.formats.smic_clip_name(p)
            if cls is not None:
                expect[name] = cls
        assert {c.clip: megc.classes[c.label] for c in kept} == expect
        assert len(dropped) == len(want) - len(expect)
        by_clip = {c.clip: c for c in kept}
        for p in want:
            name = S.formats.samm_clip_name(p) if fmt == "samm" else S.formats.smic_clip_name(p)
            if name not in by_clip:
                continue
            c = by_clip[name]
            assert c.database == db
            img = cv2.imread(c.frames[0], cv2.IMREAD_UNCHANGED)
            assert img.shape == (480, 640)            # grayscale, full size
            if fmt == "smic":
                assert c.frames[0].endswith(".bmp") and c.onset == (p.onset + 1) // 2
            else:
                assert (c.onset, c.offset) == (p.onset, p.offset)


def test_run_psn_synthetic_formats_option():
    from psn.main import parse_args
    assert parse_args([]).synthetic == ["casme2"]
    assert parse_args(["--synthetic", "casme2,casme"]).synthetic == ["casme2", "casme"]
    megc = parse_args(["--protocol", "megc2019"])
    assert (megc.synthetic, megc.subjects) == (["casme2", "samm", "smic"], 4)
    for bad in ("smic2", "casme,casme", ""):
        with pytest.raises(SystemExit):
            parse_args(["--synthetic", bad])
    for bad in (["--protocol", "megc2020"], ["--protocol", "megc2019", "--ablation"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


@pytest.mark.slow
def test_nuisance_table_says_which_written_clips_blink_and_drift(tmp_path):
    """nuisance_table recomputes, from the stamp alone, what each written clip holds: on a
    database whose only nuisance is the blink, a clip's frames on disk are those of the same
    clip drawn without a blink exactly when the table says it has none; drift sizes lie within
    the database's maximum; a folder without a stamp is refused."""
    from synthetic.clips import jpeg_roundtrip
    from synthetic.database import nuisance_table
    out = S.generate(str(tmp_path / "db"), n_subjects=2, clips_per_subject=4, seed=3,
                     nuisances={"blink": 0.5})["out_dir"]
    table = nuisance_table(out)
    plans = {(p.subject, p.filename): p for p in S.plan_database(2, 4, 3)}
    assert len(table) == 8 and {v["blink"] > 0 for v in table.values()} == {True, False}
    noise = S.NoiseBank(3)
    for (subject, name), nz in table.items():
        assert nz["drift_px"] == 0 and nz["drift_deg"] == 0
        folder = os.path.join(out, S.FRAMES_DIR, "sub%02d" % subject, name)
        disk = [cv2.imread(os.path.join(folder, f)) for f in sorted(os.listdir(folder))]
        plain = [jpeg_roundtrip(f, 90) for _, f in S.render_frames(
            S.subject_face(3, subject), plans[subject, name], noise, nuisances={"blink": 0})]
        differ = [not np.array_equal(a, b) for a, b in zip(disk, plain)]
        assert len(disk) == len(plain) and any(differ) == (nz["blink"] > 0), (name, nz)
        assert sum(differ) >= nz["blink"]
    out = S.generate(str(tmp_path / "drift"), n_subjects=1, clips_per_subject=3, seed=3,
                     nuisances={"drift_px": 4.0, "drift_deg": 1.0})["out_dir"]
    drifts = nuisance_table(out).values()
    assert all(0 <= v["drift_px"] <= 4 and abs(v["drift_deg"]) <= 1 and not v["blink"]
               for v in drifts) and max(v["drift_px"] for v in drifts) > 0
    with pytest.raises(ValueError, match="no readable stamp"):
        nuisance_table(str(tmp_path))
