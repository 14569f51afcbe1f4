"""preprocessing.contact_sheet: the contact sheet of crops and E a run writes, and its titles."""
import os

import cv2

from pipeline_helpers import manifest_of


def test_contact_sheet_is_a_png_of_crops_and_E(first):
    out = first[0]
    img = cv2.imread(os.path.join(out, "contact_sheet.png"))
    assert img is not None
    # 4 clips (one per class first), each: title bar 22 + raw 112 + E 112 + gap 4.
    assert img.shape == (4 * (22 + 112 + 112 + 4), 16 * 112, 3)


def test_contact_sheet_titles_name_the_face_method(first):
    from preprocessing.contact_sheet import choose_clips, item_title
    rows = choose_clips(manifest_of(first[0]), 4)
    assert rows and all("face: user" in item_title(r) for r in rows)
    row = dict(rows[0], face="landmarks")
    assert "face: landmarks" in item_title(row)
