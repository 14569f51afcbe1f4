"""Small fake copies of the four databases in their owners' exact formats (file names, column
headers, sheet quirks, folder layouts), with synthetic frames, for tests without licensed data.

Each make_X(base, rows=None, ...) writes one database under `base` and returns its root folder
(the folder a user passes as --X). Rows are in the sheet's own column order; the defaults
(X_ROWS) carry the quirks the loaders must handle, and X_EXPECTED gives what they should yield.
Frames are 64x48 JPEGs (grayscale for SAMM) with a square that moves with the frame number.
"""
import os

import cv2
import numpy as np

# The owners' sheet headers, defined once beside the synthetic database that writes them too.
from synthetic.formats import CASME_HEADER, HEADER as CASME2_HEADER, xls_bytes, xlsx_bytes
from synthetic.formats import SAMM_HEADER, SAMM_PREAMBLE, SAMM_SHEET

SIZE = (64, 48)  # width, height


def frame_image(n, gray=False, size=SIZE):
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    img = (x * 2 + y).astype(np.uint8)
    cx, cy = 8 + (n * 3) % (w - 16), 8 + (n * 2) % (h - 16)
    img[cy - 4:cy + 4, cx - 4:cx + 4] = 255
    return img if gray else np.dstack([img, 255 - img, img // 2])


def write_frames(folder, numbers, name, gray=False, size=SIZE):
    """Write frame_image(n) to folder/name(n) for each n; returns the folder."""
    os.makedirs(folder, exist_ok=True)
    for n in numbers:
        ok, data = cv2.imencode(".jpg", frame_image(n, gray, size))
        assert ok
        with open(os.path.join(folder, name(n)), "wb") as f:
            f.write(data.tobytes())
    return folder


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _write_xlsx(path, sheets):
    """sheets = [(title, rows)]; None cells stay empty (the synthetic database's writer)."""
    return _write(path, xlsx_bytes(sheets))


def _write_xls(path, rows, title="Sheet1"):
    return _write(path, xls_bytes(rows, title))


# ---------------------------------------------------------------- CASME II
CASME2_SHEET = "CASME2-coding-20140508.xlsx"
# Subject | Filename | onset | apex | offset | AUs | emotion   (blank columns added on writing)
CASME2_ROWS = [
    (1, "EP02_01f", 46, 59, 86, 12, "happiness"),          # pure-number AU cell: an int in Excel
    (1, "EP03_02", 10, 18, 30, "4+7+L10", "disgust"),      # side prefix; {4,7,10} is no combination
    (2, "EP09_01", 5, 12, 25, "4+7+R10", "disgust"),
    (4, "EP12_01f", 20, "/", 40, "1+R2+25", "surprise"),   # apex written '/'
    (5, "EP19_06f", 3, 7, 15, "?", "others"),              # AU cell '?'
    (12, "EP02_05", 30, 35, 45, "4+7", "repression"),
]
CASME2_EXPECTED = {  # (subject, clip): (au_set, label)
    ("casme2/sub01", "EP02_01f"): ({12}, 0),
    ("casme2/sub01", "EP03_02"): ({4, 7, 10}, 1),
    ("casme2/sub02", "EP09_01"): ({4, 7, 10}, 1),
    ("casme2/sub04", "EP12_01f"): ({1, 2, 25}, 2),
    ("casme2/sub05", "EP19_06f"): (set(), 3),
    ("casme2/sub12", "EP02_05"): ({4, 7}, 1),
}


def make_casme2(base, rows=None, tree="raw", sheet=CASME2_SHEET):
    """CASME II root: the coding sheet plus one frame tree: 'raw' (CASME2-RAW, img1.. from frame
    1 to offset+3), 'selected' (CASME2_RAW_selected, onset..offset) or 'cropped' (Cropped,
    reg_img{n}.jpg, onset..offset)."""
    rows = CASME2_ROWS if rows is None else rows
    root = os.path.join(str(base), "CASME2")
    table = [CASME2_HEADER] + [(s, f, None, on, ap, off, None, au, em) for s, f, on, ap, off, au, em in rows]
    _write_xlsx(os.path.join(root, sheet), [("Sheet1", table)])
    folder = {"raw": "CASME2-RAW", "selected": "CASME2_RAW_selected", "cropped": "Cropped"}[tree]
    for subject, clip, onset, _, offset, _, _ in rows:
        first = 1 if tree == "raw" else onset
        last = offset + 3 if tree == "raw" else offset
        name = (lambda n: f"reg_img{n}.jpg") if tree == "cropped" else (lambda n: f"img{n}.jpg")
        write_frames(os.path.join(root, folder, f"sub{int(subject):02d}", clip), range(first, last + 1), name)
    return root


# ---------------------------------------------------------------- SAMM
# Subject | Filename | onset | apex | offset | AUs | emotion
SAMM_ROWS = [
    (6, "006_1_2", 5562, 5570, 5580, "4+7", "Anger"),
    (6, "006_1_3", 100, 104, 112, "4+(R7 or R9)", "Contempt"),   # alternatives that agree
    (7, "007_3_1", 200, 205, 215, "L12A", "Happiness"),
    (28, "028_4_1", 50, 80, 60, "A1+A2", "Surprise"),       # apex after offset (sheet error)
    (11, "011_2_3", 10, 15, 20, "L12 + 61", "Other"),       # stray spaces; 61 (eyes left)
    (32, "032_3_1", 10, 5, 30, "15A+17+ref(7B)", "Sadness"),  # apex before onset; ref(...)
    (9, "009_3_4", 40, 44, 50, "10A/B+soft focus", "Disgust"),  # alternative intensity; words
    (16, "016_7_5", 30, 33, 38, "B18+25+T23+4D+9B", "Other"),
]
SAMM_EXPECTED = {
    ("samm/006", "006_1_2"): ({4, 7}, 1),
    ("samm/006", "006_1_3"): ({4, 7}, 1),              # 4+7 and 4+9: Negative either way
    ("samm/007", "007_3_1"): ({12}, 0),
    ("samm/028", "028_4_1"): ({1, 2}, 2),
    ("samm/011", "011_2_3"): ({12, 61}, 3),
    ("samm/032", "032_3_1"): ({15, 17}, 1),
    ("samm/009", "009_3_4"): ({10}, 1),
    ("samm/016", "016_7_5"): ({4, 9, 18, 23, 25}, 3),
}

# The cells of the owners' sheet that the first parser misread, with their clips' IDs:
# (row, class with every alternative read, class with the first alternative only).
SAMM_ALTERNATIVE_ROWS = [
    ((14, "014_6_3", 400, 405, 412, "A/L12", "Happiness"), 0, 0),          # objective class I
    ((7, "007_6_1", 300, 306, 314, "(R6 or R12)+R15", "Happiness"), 3, 1),  # objective VII
    ((7, "007_6_5", 500, 504, 511, "(R6 or R12)+R15", "Happiness"), 3, 1),  # objective VII
    ((14, "014_5_2", 200, 203, 209, "R12 or R14", "Contempt"), 3, 0),       # objective VII
]


def make_samm(base, rows=None, sheet=SAMM_SHEET):
    """SAMM root: the sheet (12-line preamble, then the header) and SAMM/{s:03d}/{clip}/{s:03d}_{n:05d}.jpg
    (grayscale) for n in onset..offset."""
    rows = SAMM_ROWS if rows is None else rows
    root = os.path.join(str(base), "SAMM_dataset")
    table = list(SAMM_PREAMBLE) + [SAMM_HEADER]
    for s, f, on, ap, off, au, em in rows:
        duration = off - on + 1 if isinstance(on, int) and isinstance(off, int) else None
        table.append((s, f, "2_" + str(f)[-1], on, ap, off, duration, "Micro - 1/2", au, em, "Class", None))
    _write_xlsx(os.path.join(root, sheet), [("FACS_Codes", table)])
    for s, f, on, _, off, _, _ in rows:
        write_frames(os.path.join(root, "SAMM", f"{s:03d}", f), range(on, off + 1),
                     lambda n, s=s: f"{s:03d}_{n:05d}.jpg", gray=True)
    return root


# ---------------------------------------------------------------- CAS(ME)^2
CASME2SQ_SHEET = "CAS(ME)^2code_final.xlsx"
# participant -> (folder, prefix); participant 3's video carries another prefix (s19/23_0502...)
CASME2SQ_RULE1 = [("s15", 15, 1), ("s16", 16, 2), ("s19", 19, 3)]
CASME2SQ_RULE2 = [("0101", "disgust1"), ("0401", "anger1"), ("0502", "happy2"), ("0503", "happy3")]
CASME2SQ_VIDEOS = {  # (folder, code) -> video folder name, with the shipped quirks
    ("s15", "0101"): "15_0101disgustingteeth",
    ("s16", "0401"): "16_0401eatingworms",
    ("s16", "0503"): "0503unnyfarting",
    ("s19", "0502"): "23_0502funnyerrors",
}
# participant | clip | onset | apex | offset | AUs | emotion | type | self-report  (no header)
CASME2SQ_ROWS = [
    (1, "disgust1_3", 120, 125, 135, "1+2", "disgust", "micro-expression", "disgust"),
    (1, "disgust1_4", 300, 310, 320, "4+9", "disgust", "macro-expression", "disgust"),
    (2, "anger1_1", 995, 1000, 1004, "4+7", "anger", "micro-expression", "anger"),  # img995..img1004
    (2, "happy3_2", 40, 45, 52, "12", "happy", "micro-expression", "happy"),
    (3, "happy2_1", 60, 0, 70, "6+12", "happy", "micro-expression", "happy"),       # apex 0
    (3, "happy2_5", 80, 85, 0, "12", "happy", "micro-expression", "happy"),         # offset 0
]
CASME2SQ_EXPECTED = {
    ("casme2sq/s15", "disgust1_3"): ({1, 2}, 2),
    ("casme2sq/s16", "anger1_1"): ({4, 7}, 1),
    ("casme2sq/s16", "happy3_2"): ({12}, 0),
    ("casme2sq/s19", "happy2_1"): ({6, 12}, 0),
}


def make_casme2sq(base, rows=None, sheet=CASME2SQ_SHEET, header=False):
    """CAS(ME)^2 root: the workbook (sheet 'CASFEcode_final' without header, 'naming rule1',
    'naming rule2') and rawpic/{folder}/{video}/img{n:03d}.jpg around each clip (a few frames
    before onset and after offset; offset 0 counts as apex+5)."""
    rows = CASME2SQ_ROWS if rows is None else rows
    root = os.path.join(str(base), "CAS(ME)^2")
    code_sheet = ([("participant", "clip", "onset", "apex", "offset", "AUs", "emotion", "type", "self-report")]
                  if header else []) + list(rows)
    _write_xlsx(os.path.join(root, sheet), [("CASFEcode_final", code_sheet), ("naming rule1", CASME2SQ_RULE1),
                                            ("naming rule2", CASME2SQ_RULE2)])
    folders = {p: f for f, _, p in CASME2SQ_RULE1}
    codes = {name: code for code, name in CASME2SQ_RULE2}
    for participant, clip, onset, apex, offset, *_ in rows:
        folder = folders.get(participant)
        video = CASME2SQ_VIDEOS.get((folder, codes.get(clip.split("_")[0])))
        if video is None:
            continue
        last = (offset or apex + 5) + 2
        write_frames(os.path.join(root, "rawpic", folder, video), range(max(1, onset - 2), last + 1),
                     lambda n: f"img{n:03d}.jpg")
    return root


# ---------------------------------------------------------------- CASME
# Some copies of CASME's sheet write Onset(ms), Total(ms).
CASME_HEADER_MS = CASME_HEADER[:8] + ("Onset(ms)", "Total(ms)") + CASME_HEADER[10:]
# Subject | Filename | onset | apex1 | apex2 | offset | AU | emotion   ('\\' = missing)
CASME_A_ROWS = [
    (1, "EP01_5", 12, 15, "\\", 30, "4+9", "disgust"),
    (1, "EP01_12", 10, 14, "\\", 25, "1+2", "surprise"),     # one video, two MEs
    (1, "EP01_12", 40, 44, "remake", 55, 12, "happiness"),
    (1, "EP03_4", 20, "\\", "\\", 40, "1+2+4", "fear"),      # apex missing
    (2, "EP05_2", 10, 14, "\\", "\\", "12", "happiness"),     # offset missing: 14 + 4 = 18
    (6, "EP02_5", 10, 13, "\\", 22, 14, "repression"),       # one video, four MEs:
    (6, "EP02_5", 30, "\\", "\\", "\\", "4", "disgust"),        #  no offset, no apex: 30 + 15 -> 44
    (6, "EP02_5", 45, 50, "\\", 60, "L14", "comtempt"),        #  (the sheet's own spelling)
    (6, "EP02_5", 45, 50, "\\", 60, "L14", "comtempt"),        #  a true duplicate (same onset)
    (6, "EP02_5", 55, 57, "\\", 70, "4+7", "disgust"),         #  onset inside the previous ME
    (7, "EP171", 5, 9, "\\", 20, "R12", "happiness"),         # typo: the folder is EP17_1
]
CASME_B_ROWS = [
    (8, "EP02_1", 5, 8, "\\", 20, 14, "repression"),       # numeric AU cell (a float in .xls)
    (9, "EP06_3", 30, 33, "\\", 25, "1+2", "surprise"),    # onset after offset
    (9, "EP07_1", 3, 6, 7, 12, "L12+R6", "happiness"),
    (9, "EP08_2", 500, 505, "\\", 520, "4+7", "disgust"),  # onset beyond the video's frames
]
# Frame folders differing from the sheet: the typo, and a video shorter than its row says.
CASME_FOLDERS = {(7, "EP171"): "EP17_1"}
CASME_LAST_FRAME = {(9, "EP08_2"): 40}
CASME_EXPECTED = {  # (subject, clip): (au_set, label, onset, offset)
    ("casme/sub01", "EP01_5"): ({4, 9}, 1, 12, 30),
    ("casme/sub01", "EP01_12_on10"): ({1, 2}, 2, 10, 25),
    ("casme/sub01", "EP01_12_on40"): ({12}, 0, 40, 55),
    ("casme/sub01", "EP03_4"): ({1, 2, 4}, 1, 20, 40),
    ("casme/sub02", "EP05_2"): ({12}, 0, 10, 18),
    ("casme/sub06", "EP02_5_on10"): ({14}, 3, 10, 22),
    ("casme/sub06", "EP02_5_on30"): ({4}, 1, 30, 44),
    ("casme/sub06", "EP02_5_on45"): ({14}, 3, 45, 60),
    ("casme/sub06", "EP02_5_on55"): ({4, 7}, 1, 55, 70),
    ("casme/sub07", "EP17_1"): ({12}, 0, 5, 20),
    ("casme/sub08", "EP02_1"): ({14}, 3, 5, 20),
    ("casme/sub09", "EP07_1"): ({6, 12}, 0, 3, 12),
}
CASME_SKIPPED = {  # (subject, clip): start of the reason
    ("casme/sub06", "EP02_5_on45"): "duplicate of sheet row",
    ("casme/sub09", "EP06_3"): "onset 30 after offset 25 in sheet",
    ("casme/sub09", "EP08_2"): "onset 500 beyond the video's last frame 40",
}


def _casme_table(rows, header=CASME_HEADER):
    out = [header]
    for s, f, on, a1, a2, off, au, em in rows:
        ms = round(on * 1000 / 60) if isinstance(on, int) else "\\"
        total = round((off - on + 1) * 1000 / 60) if isinstance(on, int) and isinstance(off, int) else "\\"
        out.append((s, f, None, on, a1, a2, off, None, ms, total, au, em))
    return out


def casme_frame_name(section, clip):
    """Section A: EPxx_y-N.jpg; Section B: EPxx_y-NNN.jpg (EP07_1: imgN.jpg, as some copies)."""
    if section == "A":
        return lambda n: f"{clip}-{n}.jpg"
    if clip == "EP07_1":
        return lambda n: f"img{n}.jpg"
    return lambda n: f"{clip}-{n:03d}.jpg"


def make_casme(base, section_a=None, section_b=None, sheets=("Section A.xls", "Section B.xls"),
               merged=None, header=CASME_HEADER):
    """CASME root as the owners ship it: CASME_A/Section A/{Section A.xls, sub01/EP01_5/
    EP01_5-{n}.jpg}, CASME_B/Section B/{Section B.xls, sub08/EP02_1/EP02_1-{n:03d}.jpg}, frames
    1 .. the video's last ME's offset + 2. merged='NAME.xls': one sheet holding Section A's rows
    then Section B's, in the root, instead of the two section sheets."""
    root = os.path.join(str(base), "CASME")
    parts = (("A", CASME_A_ROWS if section_a is None else section_a, sheets[0]),
             ("B", CASME_B_ROWS if section_b is None else section_b, sheets[1]))
    if merged:
        _write_xls(os.path.join(root, merged), _casme_table(parts[0][1] + parts[1][1], header))
    for sec, rows, sheet in parts:
        folder = os.path.join(root, f"CASME_{sec}", f"Section {sec}")
        if not merged:
            _write_xls(os.path.join(folder, sheet), _casme_table(rows, header))
        last = {}
        for s, f, on, _, _, off, _, _ in rows:
            end = (off if isinstance(off, int) else on + 20) + 2
            last[s, f] = max(last.get((s, f), 0), CASME_LAST_FRAME.get((s, f), end))
        for (s, f), n in last.items():
            video = CASME_FOLDERS.get((s, f), f)
            write_frames(os.path.join(folder, f"sub{s:02d}", video), range(1, n + 1),
                         casme_frame_name(sec, video))
    return root


# ---------------------------------------------------------------- SMIC
# No sheet: camera/s{N}/micro/{emotion}/s{N}_{ne|po|sur}_{NN}/imageNNNNNN.bmp, frame number =
# index in the long recording (6 digits at least). (camera, subject folder, emotion folder,
# clip, first frame, last frame, frames left out)
SMIC_CLIPS = [
    ("HS", "s1", "negative", "s1_ne_01", 76532, 76545, ()),
    ("HS", "s1", "positive", "s1_po_02", 1200, 1212, ()),
    ("HS", "s03", "surprise", "s03_sur_01", 999995, 1000004, ()),   # past 6 digits
    ("HS", "s03", "happy", "s03_ha_01", 10, 20, ()),                  # not one of the three words
    ("HS", "s4", "negative", "s4_ne_03", 300, 310, (305,)),          # a frame missing
    ("VIS", "s1", "negative", "s1_ne_01", 19133, 19137, ()),         # same person, 25 fps camera
]
SMIC_EXPECTED = {  # (database, subject, clip): (emotion, onset, offset)
    ("smic-hs", "smic/s01", "s1_ne_01"): ("negative", 76532, 76545),
    ("smic-hs", "smic/s01", "s1_po_02"): ("positive", 1200, 1212),
    ("smic-hs", "smic/s03", "s03_sur_01"): ("surprise", 999995, 1000004),
    ("smic-vis", "smic/s01", "s1_ne_01"): ("negative", 19133, 19137),
}


def make_smic(base, clips=None, release="SMIC_all_raw"):
    """SMIC root (the folder holding HS/, VIS/): BMP frames, no sheet."""
    root = os.path.join(str(base), "SMIC", release)
    for camera, subject, word, clip, first, last, gaps in (SMIC_CLIPS if clips is None else clips):
        folder = os.path.join(root, camera, subject, "micro", word, clip)
        os.makedirs(folder, exist_ok=True)
        for n in range(first, last + 1):
            if n in gaps:
                continue
            ok, data = cv2.imencode(".bmp", frame_image(n))
            assert ok
            with open(os.path.join(folder, "image%06d.bmp" % n), "wb") as f:
                f.write(data.tobytes())
    return root


# ---------------------------------------------------------------- CAS(ME)^3 part A
CASME3_SHEET = os.path.join("annotation", "partA", "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx")
CASME3_HEADER = ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion")
# The frame cells are text in the real sheet.
CASME3_ROWS = [
    ("spNO.1", "a", "120", "125", "130", "4+7", "IV", "disgust"),
    ("spNO.1", "a", "300", "304", "309", "12", "I", "happy"),        # a second ME in video a
    ("spNO.2", "J", " 40", "44", "50", "1+2", "II", "surprise"),      # stray upper-case J; a space
    ("spNO.2", "b", "12 3", "130", "140", "4", "IV", "disgust"),      # text with a space inside
    ("spNO.3", "d", "10", "30", "20", "14", "VII", "others"),         # apex after offset
    ("spNO.3", "e", "60", "65", "0", "15", "VI", "sad"),              # offset 0
    ("spNO.4", "c", "5", "8", "12", "4+9", "IV", "Others"),
]
CASME3_EXPECTED = {  # (subject, clip): (onset, offset, emotion)
    ("casme3/spNO.1", "a_120"): (120, 130, "disgust"),
    ("casme3/spNO.1", "a_300"): (300, 309, "happy"),
    ("casme3/spNO.2", "j_40"): (40, 50, "surprise"),
    ("casme3/spNO.3", "d_10"): (10, 20, "others"),
    ("casme3/spNO.4", "c_5"): (5, 12, "Others"),
}


def make_casme3(base, rows=None):
    """CAS(ME)^3 root: the part A label sheet (sheet `label`) and spNO.N/<video>/color/N.jpg
    covering every readable onset..offset of the video (folder names as on disk: 'j' for the
    sheet's 'J')."""
    rows = CASME3_ROWS if rows is None else rows
    root = os.path.join(str(base), "CASME3")
    _write_xlsx(os.path.join(root, CASME3_SHEET), [("label", [CASME3_HEADER] + list(rows))])
    for subject, video, onset, _, offset, _, _, _ in rows:
        try:
            first, last = int(str(onset).strip()), int(offset)
        except ValueError:
            continue
        if last == 0:
            continue
        write_frames(os.path.join(root, "part_A", subject, video.lower(), "color"),
                     range(first, last + 1), lambda n: f"{n}.jpg")
    return root


# ---------------------------------------------------------------- CAS(ME)^3 part C
CASME3_C_SHEET = "CAS(ME)3_part_C_ME.xlsx"
CASME3_C_HEADER = ("sub", "count", "onset", "offset", "au", "emotion")
CASME3_C_ROWS = [
    (1, 1, 5, 12, "4，11", "negative"),        # the sheet's full-width comma
    (1, 2, 20, 26, "12", "positive"),
    (2, 1, 3, 9, "1+2", "surprise"),
    (2, 2, 15, 99, "4", "negative"),          # offset past the folder's images
    (3, 1, 2, 6, "7", "others"),              # subject 3: two video folders
    (4, 1, 2, 6, "14", "others"),             # subject 4: no folder
]
# Image names of each part C color folder: numbers that are not the positions and cross a
# digit boundary (98, 100, ...), so only counting in numeric order finds the right frames.
CASME3_C_NAMES = [f"{n}.jpg" for n in range(90, 120, 2)]    # 15 images, 90.jpg .. 118.jpg
CASME3_C_EXPECTED = {  # (subject, clip): (onset, offset, file names of the frames)
    ("casme3/c01", "1_1"): (5, 12, CASME3_C_NAMES[4:12]),
    ("casme3/c01", "1_2"): None,                               # 20..26: past the 15 images
    ("casme3/c02", "2_1"): (3, 9, CASME3_C_NAMES[2:9]),
}


def make_casme3_part_c(root, rows=None):
    """Part C beside part A (or alone) under root: the sheet and
    part_C/01/a/color (one video folder), part_C/2/color (frames directly), part_C/3/{a,b}/color."""
    rows = CASME3_C_ROWS if rows is None else rows
    _write_xlsx(os.path.join(root, "annotation", CASME3_C_SHEET),
                [("mockCrimeME", [CASME3_C_HEADER] + list(rows))])
    base = os.path.join(root, "part_C")
    for folder in (os.path.join(base, "01", "a", "color"), os.path.join(base, "2", "color"),
                   os.path.join(base, "3", "a", "color"), os.path.join(base, "3", "b", "color")):
        write_frames(folder, range(len(CASME3_C_NAMES)), lambda i: CASME3_C_NAMES[i])
    return root


def make_all(base):
    """{name: root} of all four fake databases under base."""
    return {"casme": make_casme(base), "casme2": make_casme2(base),
            "casme2sq": make_casme2sq(base), "samm": make_samm(base)}
