import os
import shutil

import openpyxl
import pytest

import fake_databases as fd
from preprocessing.clips import Clip, Skipped, frame_number
from preprocessing.errors import InputError
from preprocessing.loaders import load_database, load_databases, read_sheet
from preprocessing.sheets import SheetError


def by_key(clips):
    return {(c.subject, c.clip): c for c in clips}


def check_clips(clips, expected):
    got = by_key(clips)
    assert set(got) == set(expected)
    for key, (aus, label) in expected.items():
        c = got[key]
        assert c.au_set == frozenset(aus), key
        assert c.label == label, key
        assert len(c.frames) == c.offset - c.onset + 1
        assert [frame_number(os.path.basename(p)) for p in c.frames] == list(range(c.onset, c.offset + 1))
        assert all(os.path.isabs(p) and os.path.isfile(p) for p in c.frames)
        assert c.apex is None or c.onset <= c.apex <= c.offset
    return got


def reasons(skipped):
    return {(s.subject, s.clip): s.reason for s in skipped}


def snapshot(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            st = os.stat(os.path.join(dirpath, f))
            out[os.path.join(dirpath, f)] = (st.st_size, st.st_mtime_ns)
    return out


# ------------------------------------------------------------------ CASME II
@pytest.mark.parametrize("tree", ["raw", "selected", "cropped"])
def test_casme2_trees(tmp_path, tree):
    root = fd.make_casme2(tmp_path, tree=tree)
    clips, skipped = load_database("casme2", root, tree="auto" if tree != "cropped" else "cropped")
    got = check_clips(clips, fd.CASME2_EXPECTED)
    assert skipped == []
    c = got["casme2/sub01", "EP02_01f"]
    prefix = "reg_img" if tree == "cropped" else "img"
    assert os.path.basename(c.frames[0]) == f"{prefix}46.jpg" and os.path.basename(c.frames[-1]) == f"{prefix}86.jpg"
    assert c.aus == "12" and c.apex == 59 and c.emotion == "happiness" and c.database == "casme2"
    assert got["casme2/sub04", "EP12_01f"].apex is None
    assert any("apex missing" in n for n in got["casme2/sub04", "EP12_01f"].notes)
    assert any("'?'" in n for n in got["casme2/sub05", "EP19_06f"].notes)


def test_casme2_cropped_ignored_unless_asked(tmp_path):
    root = fd.make_casme2(tmp_path, tree="raw")
    shutil.copytree(os.path.join(root, "CASME2-RAW"), os.path.join(root, "Cropped"))
    clips, _ = load_database("casme2", root)
    assert all(os.sep + "CASME2-RAW" + os.sep in c.frames[0] for c in clips)
    with pytest.raises(InputError, match="CASME2_RAW_selected"):
        load_database("casme2", root, tree="selected")


def test_casme2_missing_folder_and_frames(tmp_path):
    root = fd.make_casme2(tmp_path, tree="selected")
    shutil.rmtree(os.path.join(root, "CASME2_RAW_selected", "sub02", "EP09_01"))
    os.remove(os.path.join(root, "CASME2_RAW_selected", "sub01", "EP02_01f", "img50.jpg"))
    for n in (20, 21, 22, 25):
        os.remove(os.path.join(root, "CASME2_RAW_selected", "sub01", "EP03_02", f"img{n}.jpg"))
    open(os.path.join(root, "CASME2_RAW_selected", "sub12", "EP02_05", "img40.jpg"), "w").close()
    clips, skipped = load_database("casme2", root)
    r = reasons(skipped)
    assert r["casme2/sub02", "EP09_01"].startswith("missing folder ")
    assert "sub02" in r["casme2/sub02", "EP09_01"]
    assert r["casme2/sub01", "EP02_01f"].startswith("missing frames 50 of 46..86 in ")
    assert r["casme2/sub01", "EP03_02"].startswith("missing frames 20..22, 25 of 10..30 in ")
    assert r["casme2/sub12", "EP02_05"].startswith("empty frame file") and "img40.jpg" in r["casme2/sub12", "EP02_05"]
    assert len(clips) == 2
    src = {s.clip: s.source for s in skipped}
    assert src["EP02_01f"].endswith(fd.CASME2_SHEET + ":2")


def test_casme2_sheet_row_problems(tmp_path):
    rows = fd.CASME2_ROWS + [
        (3, "EP01_01", 50, 40, 30, "4", "disgust"),       # onset after offset
        (3, "EP01_02", 10, 90, 20, "4", "disgust"),       # apex outside
        (1, "EP02_01f", 46, 59, 86, 12, "happiness"),     # duplicate
        ("abc", "EP04_01", 1, 2, 3, "4", "disgust"),      # unreadable subject
        (3, "EP05_01", "x", 2, 3, "4", "disgust"),        # unreadable onset
        (3, "EP06_01", 1, 2, 4, "4+M57", "disgust"),      # unknown AU token: excluded
    ]
    root = fd.make_casme2(tmp_path, rows=[r for r in rows if r[0] != "abc" and r[2] != "x"], tree="selected")
    # unreadable rows have no frames to write; add them to the sheet afterwards
    path = os.path.join(root, fd.CASME2_SHEET)
    wb = openpyxl.load_workbook(path)
    for s, f, on, ap, off, au, em in rows:
        if s == "abc" or on == "x":
            wb.active.append([s, f, None, on, ap, off, None, au, em])
    wb.save(path)
    clips, skipped = load_database("casme2", root)
    r = reasons(skipped)
    assert r["casme2/sub03", "EP01_01"] == "onset 50 after offset 30 in sheet"
    assert r["casme2/sub01", "EP02_01f"] == f"duplicate of sheet row {path}:2"
    assert r["casme2/abc", "EP04_01"].startswith("unreadable sheet row")
    assert r["casme2/sub03", "EP05_01"] == "unreadable onset 'x' in sheet"
    got = by_key(clips)
    c = got["casme2/sub03", "EP01_02"]
    assert c.apex == 20 and any("apex 90 outside onset..offset 10..20" in n for n in c.notes)
    assert ("casme2/sub03", "EP06_01") not in got
    assert "'M57' is no FACS action unit" in r["casme2/sub03", "EP06_01"]


def test_casme2_malformed_columns(tmp_path):
    root = fd.make_casme2(tmp_path)
    path = os.path.join(root, fd.CASME2_SHEET)
    wb = openpyxl.load_workbook(path)
    wb.active.cell(1, 4).value = "Start"  # OnsetFrame renamed
    wb.save(path)
    with pytest.raises(SheetError) as err:
        load_database("casme2", root)
    msg = str(err.value)
    assert path in msg and "OnsetFrame" in msg and "Start" in msg and "Fix" in msg


def test_casme2_second_sheet_version_and_old_xls_names(tmp_path):
    root = fd.make_casme2(tmp_path, sheet="CASME2-coding-20190701.xlsx")
    clips, _ = load_database("casme2", root)
    assert len(clips) == 6


# ------------------------------------------------------------------ SAMM
def test_samm(tmp_path):
    root = fd.make_samm(tmp_path)
    clips, skipped = load_database("samm", root)
    got = check_clips(clips, fd.SAMM_EXPECTED)
    assert skipped == []
    c = got["samm/006", "006_1_2"]
    assert os.path.basename(c.frames[0]) == "006_05562.jpg" and c.emotion == "Anger"
    assert got["samm/028", "028_4_1"].apex == 60
    assert any("clamped to 60" in n for n in got["samm/028", "028_4_1"].notes)
    assert got["samm/032", "032_3_1"].apex == 10
    assert any("soft focus" in n for n in got["samm/009", "009_3_4"].notes)
    assert got["samm/006", "006_1_3"].aus == "4+(R7 or R9)"
    assert "AUs: alternatives in '4+(R7 or R9)': AU sets 4+7 | 4+9" in got["samm/006", "006_1_3"].notes


@pytest.mark.parametrize("alternatives", ["agree", "first"])
def test_samm_cells_with_alternatives(tmp_path, alternatives):
    """The owners' cells the first parser misread: every alternative is read, and a class is
    kept only when all give it (the default), or the first alternative decides."""
    from preprocessing.labels import DEFAULT_RULES, load_rules
    from preprocessing.table4 import table4
    rows = [row for row, _, _ in fd.SAMM_ALTERNATIVE_ROWS]
    want = {(f"samm/{row[0]:03d}", row[1]): agree if alternatives == "agree" else first
            for row, agree, first in fd.SAMM_ALTERNATIVE_ROWS}
    root = fd.make_samm(tmp_path, rows=fd.SAMM_ROWS + rows)
    rules = load_rules(DEFAULT_RULES, alternatives=alternatives)
    clips, skipped = load_database("samm", root, rules)
    got = by_key(clips)
    assert skipped == [] and {key: got[key].label for key in want} == want
    assert got["samm/014", "014_6_3"].au_set == {12} and got["samm/014", "014_6_3"].notes == ()
    assert "AUs: alternatives in 'R12 or R14': AU sets 12 | 14" in got["samm/014", "014_5_2"].notes
    # Table 4 from the sheet alone: the fakes' 1/4/1/2 plus the four rows.
    extra = [sum(1 for label in want.values() if label == k) for k in range(4)]
    counts = {k: v for k, v in table4({"samm": root}, rules)[0].items() if k != "database"}
    assert list(counts.values()) == [a + b for a, b in zip([1, 4, 1, 2], extra)] + [12]
    if alternatives == "agree":
        assert list(counts.values()) == [2, 4, 1, 5, 12]


def test_samm_missing_frame_and_folder(tmp_path):
    root = fd.make_samm(tmp_path)
    os.remove(os.path.join(root, "SAMM", "007", "007_3_1", "007_00210.jpg"))
    shutil.rmtree(os.path.join(root, "SAMM", "011"))
    clips, skipped = load_database("samm", root)
    r = reasons(skipped)
    assert r["samm/007", "007_3_1"].startswith("missing frames 210 of 200..215")
    assert r["samm/011", "011_2_3"].startswith("missing folder") and "011_2_3" in r["samm/011", "011_2_3"]
    assert len(clips) == len(fd.SAMM_ROWS) - 2


def test_samm_without_header_row(tmp_path):
    root = fd.make_samm(tmp_path)
    path = os.path.join(root, fd.SAMM_SHEET)
    wb = openpyxl.load_workbook(path)
    wb.active.delete_rows(len(fd.SAMM_PREAMBLE) + 1)
    wb.save(path)
    with pytest.raises(SheetError, match="no header row with the expected columns"):
        read_sheet("samm", root)


# ------------------------------------------------------------------ CAS(ME)^2
def test_casme2sq(tmp_path):
    root = fd.make_casme2sq(tmp_path)
    clips, skipped = load_database("casme2sq", root)
    got = check_clips(clips, fd.CASME2SQ_EXPECTED)
    # the macro row is no clip of this project and is not reported; offset 0 is skipped
    assert reasons(skipped) == {("casme2sq/s19", "happy2_5"): "offset 0 (unknown) in sheet"}
    names = [os.path.basename(p) for p in got["casme2sq/s16", "anger1_1"].frames]
    assert names[:5] == ["img995.jpg", "img996.jpg", "img997.jpg", "img998.jpg", "img999.jpg"]
    assert names[5:] == ["img1000.jpg", "img1001.jpg", "img1002.jpg", "img1003.jpg", "img1004.jpg"]
    assert "0503unnyfarting" in got["casme2sq/s16", "happy3_2"].frames[0]
    assert "23_0502funnyerrors" in got["casme2sq/s19", "happy2_1"].frames[0]
    assert os.path.basename(got["casme2sq/s15", "disgust1_3"].frames[0]) == "img120.jpg"
    assert got["casme2sq/s19", "happy2_1"].apex is None


def test_casme2sq_offset_zero_option_and_header(tmp_path):
    root = fd.make_casme2sq(tmp_path, header=True)
    clips, skipped = load_database("casme2sq", root, offset_zero="apex")
    assert skipped == []
    c = by_key(clips)["casme2sq/s19", "happy2_5"]
    assert (c.onset, c.offset, len(c.frames)) == (80, 85, 6) and "ended at apex" in c.notes[0]


def test_casme2sq_naming_rule_gaps_and_folders(tmp_path):
    rows = fd.CASME2SQ_ROWS + [
        (7, "disgust1_1", 10, 12, 15, "4", "disgust", "micro-expression", ""),   # not in naming rule1
        (1, "sad9_1", 10, 12, 15, "4", "sad", "micro-expression", ""),           # not in naming rule2
        (1, "happy2_3", 10, 12, 15, "12", "happy", "micro-expression", ""),      # s15 has no 0502 video
        (2, "disgust1_2", 10, 12, 15, "4", "disgust", "blink", ""),              # unknown type
    ]
    root = fd.make_casme2sq(tmp_path, rows=rows)
    clips, skipped = load_database("casme2sq", root)
    r = reasons(skipped)
    assert r["casme2sq/7", "disgust1_1"] == "participant 7 not in sheet 'naming rule1'"
    assert r["casme2sq/s15", "sad9_1"] == "stimulus 'sad9' not in sheet 'naming rule2'"
    assert r["casme2sq/s15", "happy2_3"].startswith("no video folder with code 0502 in ")
    assert r["casme2sq/s16", "disgust1_2"].startswith("unknown expression type 'blink'")
    # a second folder with the same code is ambiguous, not guessed
    os.makedirs(os.path.join(root, "rawpic", "s15", "15_0101copy"))
    _, skipped = load_database("casme2sq", root)
    assert reasons(skipped)["casme2sq/s15", "disgust1_3"].startswith(
        "2 (15_0101copy, 15_0101disgustingteeth) video folder")


def test_casme2sq_wrong_columns(tmp_path):
    rows = [(1, "disgust1_3", 120, 125, 135, "1+2", "disgust")]  # type column missing
    root = fd.make_casme2sq(tmp_path, rows=rows)
    with pytest.raises(SheetError) as err:
        read_sheet("casme2sq", root)
    assert fd.CASME2SQ_SHEET in str(err.value) and "disgust1_3" in str(err.value)


def test_unknown_au_tokens_exclude_the_clip_unless_kept(tmp_path):
    from preprocessing.labels import DEFAULT_RULES, load_rules
    rows = fd.CASME2_ROWS + [(3, "EP07_02", 5, 9, 15, "6+AU12x", "happiness")]
    root = fd.make_casme2(tmp_path, rows=rows)
    clips, skipped = load_database("casme2", root)
    why = reasons(skipped)[("casme2/sub03", "EP07_02")]
    assert "'AU12x' is no FACS action unit" in why and "--unknown-aus keep" in why
    clips, skipped = load_database("casme2", root, load_rules(DEFAULT_RULES))
    assert ("casme2/sub03", "EP07_02") in reasons(skipped)      # a rule table's default
    clips, skipped = load_database("casme2", root, load_rules(DEFAULT_RULES, keep_unknown_aus=True))
    clip = by_key(clips)[("casme2/sub03", "EP07_02")]
    assert clip.au_set == {6} and clip.label == 0 and any("AU12x" in n for n in clip.notes)


# ------------------------------------------------------------------ CASME
def check_casme(clips, skipped):
    got = check_clips(clips, {k: v[:2] for k, v in fd.CASME_EXPECTED.items()})
    for key, (_, _, onset, offset) in fd.CASME_EXPECTED.items():
        assert (got[key].onset, got[key].offset) == (onset, offset), key
    why = reasons(skipped)
    assert set(why) == set(fd.CASME_SKIPPED)
    for key, start in fd.CASME_SKIPPED.items():
        assert why[key].startswith(start), (key, why[key])
    return got


def notes_of(clip):
    return " | ".join(clip.notes)


@pytest.mark.parametrize("layout", ["sections", "merged", "ms-header"])
def test_casme_as_the_owners_ship_it(tmp_path, layout):
    kw = {"merged": dict(merged="CASME coding.xls"),
          "ms-header": dict(header=fd.CASME_HEADER_MS)}.get(layout, {})
    root = fd.make_casme(tmp_path, **kw)
    clips, skipped = load_database("casme", root)
    got = check_casme(clips, skipped)
    # Both sections' frame names, and imgN.jpg.
    assert os.path.basename(got["casme/sub01", "EP01_5"].frames[0]) == "EP01_5-12.jpg"
    assert os.path.basename(got["casme/sub08", "EP02_1"].frames[0]) == "EP02_1-005.jpg"
    assert os.path.basename(got["casme/sub09", "EP07_1"].frames[0]) == "img3.jpg"
    assert got["casme/sub08", "EP02_1"].aus == "14"
    assert got["casme/sub01", "EP03_4"].apex is None
    # Several MEs of one video: distinct clips over the one folder.
    a, b = got["casme/sub01", "EP01_12_on10"], got["casme/sub01", "EP01_12_on40"]
    assert os.path.dirname(a.frames[0]) == os.path.dirname(b.frames[0])
    assert a.emotion == "surprise" and b.emotion == "happiness"
    # The end rule for a missing OffsetF, noted per clip.
    assert "OffsetF missing in sheet; end set to frame 18 by apex + (apex - onset)" in notes_of(
        got["casme/sub02", "EP05_2"])
    assert "end set to frame 44 by the frame before the next micro-expression" in notes_of(
        got["casme/sub06", "EP02_5_on30"])
    assert "onset 55 inside the micro-expression of sheet row" in notes_of(got["casme/sub06", "EP02_5_on55"])
    # Subject 7's typo: the folder's name, with a note.
    assert "sheet Filename 'EP171' matched to folder EP17_1" in notes_of(got["casme/sub07", "EP17_1"])
    sheets = {s.source.rsplit(":", 1)[0] for s in skipped}
    if layout == "merged":
        assert sheets == {os.path.join(root, "CASME coding.xls")}
    else:
        assert sheets == {os.path.join(root, "CASME_A", "Section A", "Section A.xls"),
                          os.path.join(root, "CASME_B", "Section B", "Section B.xls")}


def test_casme_clip_ids_do_not_depend_on_row_order(tmp_path):
    rows = list(reversed(fd.CASME_A_ROWS))
    root = fd.make_casme(tmp_path, section_a=rows)
    clips, skipped = load_database("casme", root)
    check_casme(clips, skipped)


def test_casme_table4_keeps_every_micro_expression(tmp_path):
    """From the sheet alone: multi-ME rows and rows without OffsetF all count."""
    root = fd.make_casme(tmp_path)
    entries, skipped = read_sheet("casme", root)
    rows = len(fd.CASME_A_ROWS) + len(fd.CASME_B_ROWS)
    # Only the repeated onset and the onset-after-offset row are out; the short video is a
    # frame-stage exclusion.
    assert len(entries) == rows - 2
    assert sorted(s.reason.split(" (")[0].split(" of sheet")[0] for s in skipped) == [
        "duplicate", "onset 30 after offset 25 in sheet"]


def test_casme_overlapping_sections_are_noted(tmp_path):
    b_rows = fd.CASME_B_ROWS + [(1, "EP09_9", 5, 7, "\\", 15, "12", "happiness")]
    root = fd.make_casme(tmp_path, section_b=b_rows)
    clips, _ = load_database("casme", root)
    clip = by_key(clips)["casme/sub01", "EP09_9"]
    assert "subject sub01 is also in Section A.xls (row 2)" in notes_of(clip)


def test_casme_other_sheet_names_and_section_choice(tmp_path):
    root = fd.make_casme(tmp_path, sheets=("CASME_SectionA.xls", "CASME_SectionB.xls"))
    # the same sub/clip in both sections' trees: the sheet's section decides
    shutil.copytree(os.path.join(root, "CASME_A", "Section A", "sub01"),
                    os.path.join(root, "CASME_B", "Section B", "sub01"))
    clips, skipped = load_database("casme", root)
    got = check_casme(clips, skipped)
    assert os.sep + "Section A" + os.sep in got["casme/sub01", "EP01_5"].frames[0]


def test_casme_malformed_xls(tmp_path):
    root = fd.make_casme(tmp_path)
    fd._write_xls(os.path.join(root, "CASME_B", "Section B", "Section B.xls"),
                  [("Subject", "Filename", "Start", "End")])
    with pytest.raises(SheetError) as err:
        read_sheet("casme", root)
    assert "Section B.xls" in str(err.value) and "OnsetF" in str(err.value)


# ------------------------------------------------------------------ all
def test_load_databases_composes_and_never_writes(tmp_path):
    roots = fd.make_all(tmp_path / "data")
    before = snapshot(tmp_path)
    clips, skipped = load_databases(roots)
    assert snapshot(tmp_path) == before
    assert [c.database for c in clips] == sorted((c.database for c in clips),
                                                 key=["casme", "casme2", "casme2sq", "samm"].index)
    assert len(clips) == len(fd.CASME_EXPECTED) + 6 + 4 + 8
    assert len(skipped) == len(fd.CASME_SKIPPED) + 1
    assert all(isinstance(c, Clip) for c in clips) and all(isinstance(s, Skipped) for s in skipped)
    assert all(c.subject.startswith(c.database + "/") for c in clips)
    with pytest.raises(ValueError, match="unknown database 'smic2'"):
        load_databases({"smic2": str(tmp_path)})


def test_missing_root_and_missing_sheet(tmp_path):
    for name in ("casme", "casme2", "casme2sq", "samm"):
        with pytest.raises(InputError) as err:
            load_database(name, str(tmp_path / "nowhere"))
        assert str(tmp_path / "nowhere") in str(err.value) and "does not exist" in str(err.value)
        with pytest.raises(InputError, match="no .* sheet"):
            load_database(name, str(tmp_path))


def test_missing_frame_tree(tmp_path):
    root = fd.make_samm(tmp_path)
    shutil.rmtree(os.path.join(root, "SAMM"))
    with pytest.raises(InputError, match="no folder of SAMM subject folders"):
        load_database("samm", root)
    assert len(read_sheet("samm", root)[0]) == len(fd.SAMM_ROWS)  # the sheet alone still reads


def test_corrupt_sheet(tmp_path):
    root = fd.make_casme2(tmp_path)
    with open(os.path.join(root, fd.CASME2_SHEET), "wb") as f:
        f.write(b"not a spreadsheet")
    with pytest.raises(SheetError, match="cannot read this spreadsheet"):
        load_database("casme2", root)


# ------------------------------------------------------------------ CAS(ME)^3 sheet versions
V1_SHEET = os.path.join("annotation", "partA", "cas(me)3_part_A_ME_label_JpgIndex.xls")
WRONGLY_LABELLED = os.path.join("annotation", "partA", "CAS(ME)3_part_A_wrongly_labeled_me_in_V1.xlsx")


def _other_part_a_versions(root):
    fd._write_xls(os.path.join(root, V1_SHEET), [fd.CASME3_HEADER[:6] + ("emotion",)])
    fd._write_xlsx(os.path.join(root, WRONGLY_LABELLED), [("Sheet1", [("Subject", "Filename", "label")])])


def test_casme3_without_v2_names_what_is_missing(tmp_path):
    """v1 (.xls) and the list of v1's wrongly labelled rows beside it, v2 gone: the error names
    v2 and says why the others are not read (it once took the second for the label sheet)."""
    root = fd.make_casme3(tmp_path)
    _other_part_a_versions(root)
    os.remove(os.path.join(root, fd.CASME3_SHEET))
    with pytest.raises(InputError) as err:
        read_sheet("casme3", root)
    msg = str(err.value)
    assert "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx" in msg and "is missing" in msg
    assert os.path.join(root, V1_SHEET) + " (v1, .xls: not read" in msg and "65 rows" in msg
    assert os.path.join(root, WRONGLY_LABELLED) + " (v1's wrongly labelled rows" in msg
    assert "no sheet named" not in msg


def test_casme3_never_takes_the_wrongly_labelled_list_for_v2(tmp_path):
    """A v2 sheet under a name only the loosest pattern matches, sorted after the list."""
    root = fd.make_casme3(tmp_path)
    _other_part_a_versions(root)
    renamed = os.path.join(root, "annotation", "partA", "CASME3_part_A_label.xlsx")
    os.rename(os.path.join(root, fd.CASME3_SHEET), renamed)
    assert sorted([renamed, os.path.join(root, WRONGLY_LABELLED)])[0].endswith("V1.xlsx")
    entries, _ = read_sheet("casme3", root)
    assert {e.source.rsplit(":", 1)[0] for e in entries} == {renamed}
    assert len(entries) == len(fd.CASME3_EXPECTED)


# ------------------------------------------------------------------ CASME copies without AUs
CASME_LIST_HEADER = ("Subject", "Filename", "OnsetF", "ApexF", "OffsetF", "Emotion")
CASME_LIST_ROWS = [(1, "EP01_5", 12, 15, 30, "disgust"), (8, "EP02_1", 5, 8, 20, "repression")]


@pytest.mark.parametrize("name", ["CASME.xls", "CASME.csv"])
def test_casme_list_without_au_column_is_named(tmp_path, name):
    """The widely shared list of CASME's clips has no AU column: the error says that, not
    'no CASME coding sheet'."""
    root = str(tmp_path / "CASME")
    path = os.path.join(root, name)
    if name.endswith(".xls"):
        fd._write_xls(path, [CASME_LIST_HEADER] + CASME_LIST_ROWS)
    else:
        os.makedirs(root)
        with open(path, "w") as f:
            f.write("\n".join(",".join(map(str, r)) for r in [CASME_LIST_HEADER] + CASME_LIST_ROWS))
    with pytest.raises(InputError) as err:
        read_sheet("casme", root)
    msg = str(err.value)
    assert msg.startswith(f"{path}: a list of CASME's clips without the AU column")
    assert "Subject, Filename, OnsetF, ApexF, OffsetF, Emotion" in msg
    assert "Section A.xls and Section B.xls" in msg and "no CASME coding sheet" not in msg


def test_casme_csv_with_au_column_is_not_read_and_said_so(tmp_path):
    root = str(tmp_path / "CASME")
    os.makedirs(root)
    with open(os.path.join(root, "CASME.csv"), "w") as f:
        f.write("Subject,Filename,OnsetF,ApexF1,OffsetF,AU,Emotion\n1,EP01_5,12,15,30,4+9,disgust\n")
    with pytest.raises(InputError, match="a CSV copy of CASME's sheet, which is not read"):
        read_sheet("casme", root)
    # the owners' sheets beside it are read as before
    root = fd.make_casme(tmp_path / "both")
    fd._write_xls(os.path.join(root, "CASME.xls"), [CASME_LIST_HEADER] + CASME_LIST_ROWS)
    assert len(read_sheet("casme", root)[0]) == len(fd.CASME_A_ROWS) + len(fd.CASME_B_ROWS) - 2


def test_sheet_cells_that_are_paths_are_skipped_not_read(tmp_path):
    """A Filename cell '../../../outside/EP07_01f' (or an absolute path) made the loader read
    frames from outside the database folder; such clips are skipped, saying why."""
    outside = str(tmp_path / "elsewhere" / "EP08_01")
    rows = fd.CASME2_ROWS + [
        (7, "../../../outside/EP07_01f", 10, 12, 20, "12", "happiness"),
        (8, outside, 10, 12, 20, "12", "happiness"),
        (9, "..", 10, 12, 20, "12", "happiness"),
    ]
    root = fd.make_casme2(tmp_path / "db", rows=rows, tree="selected")
    # make_casme2 wrote those clips' frames where the cells point: outside the root.
    assert os.path.isdir(tmp_path / "db" / "outside" / "EP07_01f") and os.path.isdir(outside)
    for loaded in (load_database("casme2", root), read_sheet("casme2", root)):
        got, skipped = loaded
        assert {(c.subject, c.clip) for c in got} >= set(fd.CASME2_EXPECTED)
        assert not [c for c in got if c.subject in ("casme2/sub07", "casme2/sub08", "casme2/sub09")]
        r = reasons(skipped)
        for key in (("casme2/sub07", "../../../outside/EP07_01f"), ("casme2/sub08", outside),
                    ("casme2/sub09", "..")):
            assert "is a path, not a clip name" in r[key], r
