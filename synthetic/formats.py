"""The owners' on-disk formats the synthetic database is written in: CASME II's sheet and
frame tree, CASME's two section sheets and folders, SAMM's sheet (preamble, header) and
grayscale frame tree, and SMIC-HS's sheet-less tree (the label is the emotion folder)."""
import io
import os
import re
import zipfile


SHEET_NAME = "CASME2-coding-20140508.xlsx"
FRAMES_DIR = "CASME2_RAW_selected"
FORMATS = ("casme2", "casme", "samm", "smic")
# The owners' sheet headers (the tests' fake databases take them from here too).
CASME_HEADER = ("Subject", "Filename", None, "OnsetF", "ApexF1", "ApexF2", "OffsetF", None,
                "Onset", "Total", "AU", "Emotion")
CASME_FPS = 60   # for the sheet's millisecond columns, as the owners computed them
HEADER = ("Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
          "Action Units", "Estimated Emotion")
SAMM_SHEET = "SAMM_Micro_FACS_Codes_v2.xlsx"
SAMM_PREAMBLE = [
    ("SAMM Micro-Movement Database: FACS codes",), (None,), ("Version 2",),
    ("Coded by certified FACS coders",), (None,), ("Inducement codes: see the SAMM paper",),
    ("Frames are numbered from the start of each recording",), (None,),
    ("Action Units follow FACS 2002 notation (L/R/A/T/B, intensity A-E)",), (None,),
    ("Contact: the SAMM team",), (None,),
]
SAMM_HEADER = ("Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame",
               "Duration", "Micro", "Action Units", "Estimated Emotion", "Objective Classes", "Notes")
# The synthetic clips' CASME II emotions in SAMM's vocabulary (SAMM has no 'repression').
SAMM_EMOTIONS = {"happiness": "Happiness", "disgust": "Disgust", "repression": "Contempt",
                 "sadness": "Sadness", "surprise": "Surprise", "others": "Other"}
# SMIC: the emotion folder per class (0 positive, 1 negative, 2 surprise; SMIC has no others)
# and the clip-name abbreviation; SMIC-HS films at 100 fps, so every second frame of the
# 200 fps synthetic clip is written, numbered at 100 fps.
SMIC_WORDS = {0: ("positive", "po"), 1: ("negative", "ne"), 2: ("surprise", "sur")}
SMIC_DIR = os.path.join("SMIC_all_raw", "HS")


# --------------------------------------------------------------------------- writing

_FIXED_TIME = (2014, 5, 8, 0, 0, 0)


def xlsx_bytes(sheets):
    """An .xlsx workbook as bytes, identical for identical content: sheets = [(title, rows)],
    None cells left empty.

    openpyxl stamps the save time into docProps/core.xml and the zip entries; both are
    replaced by the real CASME II sheet's date so that the same rows always give the same
    bytes."""
    from openpyxl import Workbook

    wb = Workbook()
    for k, (title, rows) in enumerate(sheets):
        ws = wb.active if k == 0 else wb.create_sheet()
        ws.title = title
        for row in rows:
            ws.append(list(row))
    raw = io.BytesIO()
    wb.save(raw)
    out = io.BytesIO()
    stamp = "%04d-%02d-%02dT%02d:%02d:%02dZ" % _FIXED_TIME
    with zipfile.ZipFile(raw) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:)",
                              lambda m: m.group(1) + stamp.encode() + m.group(3), data)
            zi = zipfile.ZipInfo(info.filename, date_time=_FIXED_TIME)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            zout.writestr(zi, data)
    return out.getvalue()


def xls_bytes(rows, title="Sheet1"):
    """An Excel 97 (.xls) workbook of one sheet as bytes (CASME's sections are .xls)."""
    import xlwt
    wb = xlwt.Workbook()
    ws = wb.add_sheet(title)
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is not None:
                ws.write(r, c, value)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def sheet_bytes(plans):
    """CASME II's coding sheet for the plans, as .xlsx bytes (identical for identical plans)."""
    rows = [HEADER] + [(p.subject, p.filename, None, p.onset, p.apex_cell, p.offset, None,
                        p.au_cell, p.emotion) for p in plans]
    return xlsx_bytes([("Sheet1", rows)])


def ep_numbers(filename):
    """CASME II-style 'EP02_01f' -> (2, 1): the episode and the clip's number in it, from which
    the other formats' clip names are made."""
    ep, k = filename.rstrip("f").split("_")
    return int(ep[2:]), int(k)


def casme_filename(filename):
    """CASME II-style 'EP02_01f' -> CASME-style 'EP02_1'."""
    ep, k = ep_numbers(filename)
    return f"EP{ep:02d}_{k}"


def casme_section(plan, n_subjects):
    """'A' for the first half of the subjects, else 'B'."""
    return "A" if plan.subject <= (n_subjects + 1) // 2 else "B"


def writes(plan, fmt):
    """Whether a format holds this clip (SMIC has no 'others' class)."""
    return fmt != "smic" or plan.label in SMIC_WORDS


def smic_clip_name(plan):
    """s3_ne_0201-style: subject, the class's abbreviation, then the EPxx_yy numbers as four
    digits (unique in the subject; SMIC's own names number the clips with two)."""
    return "s%d_%s_%02d%02d" % ((plan.subject, SMIC_WORDS[plan.label][1]) + ep_numbers(plan.filename))


def clip_dir(root, plan, fmt="casme2", n_subjects=None):
    if fmt == "samm":
        return os.path.join(root, "SAMM", "%03d" % plan.subject, samm_clip_name(plan))
    if fmt == "smic":
        return os.path.join(root, SMIC_DIR, "s%d" % plan.subject, "micro",
                            SMIC_WORDS[plan.label][0], smic_clip_name(plan))
    if fmt == "casme":
        sec = casme_section(plan, n_subjects)
        return os.path.join(root, f"CASME_{sec}", f"Section {sec}", "sub%02d" % plan.subject,
                            casme_filename(plan.filename))
    return os.path.join(root, FRAMES_DIR, "sub%02d" % plan.subject, plan.filename)


def samm_clip_name(plan):
    """006_1_2-style: subject, then the EPxx_yy numbers."""
    return "%03d_%d_%d" % ((plan.subject,) + ep_numbers(plan.filename))


def frame_name(plan, number, fmt="casme2", n_subjects=None):
    if fmt == "samm":
        return "%03d_%05d.jpg" % (plan.subject, number)
    if fmt == "smic":
        return "image%06d.bmp" % number
    if fmt == "casme":
        name = casme_filename(plan.filename)
        if casme_section(plan, n_subjects) == "A":
            return f"{name}-{number}.jpg"
        return f"{name}-{number:03d}.jpg"
    return "img%d.jpg" % number


def casme_sheets(plans, n_subjects):
    """{relative path: .xls bytes} of the two section sheets."""
    out = {}
    for sec in ("A", "B"):
        plans_sec = [p for p in plans if casme_section(p, n_subjects) == sec]
        if not plans_sec:
            continue
        rows = [CASME_HEADER]
        for p in plans_sec:
            apex = "\\" if p.apex_cell == "/" else p.apex_cell
            ms = round(p.onset * 1000 / CASME_FPS)
            total = round((p.offset - p.onset + 1) * 1000 / CASME_FPS)
            rows.append((p.subject, casme_filename(p.filename), None, p.onset, apex, "\\",
                         p.offset, None, ms, total, p.au_cell, p.emotion))
        out[os.path.join(f"CASME_{sec}", f"Section {sec}", f"Section {sec}.xls")] = xls_bytes(rows)
    return out


def samm_sheet(plans):
    """{SAMM's sheet name: .xlsx bytes}: the preamble, the header, a row per clip."""
    rows = list(SAMM_PREAMBLE) + [SAMM_HEADER]
    for p in plans:
        rows.append((p.subject, samm_clip_name(p), "1_%d" % ep_numbers(p.filename)[1], p.onset, p.apex,
                     p.offset, p.offset - p.onset + 1, "Micro - 1/2", p.au_cell,
                     SAMM_EMOTIONS[p.emotion], None, None))
    return {SAMM_SHEET: xlsx_bytes([("FACS_Codes", rows)])}
