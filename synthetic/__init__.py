"""A synthetic micro-expression database written in CASME II's (or CASME's) on-disk format.

A newcomer without the licensed databases must still be able to run the whole system, and
tests need clips whose class is known and visible in the frames. This module draws faces
with OpenCV/numpy (one identity per subject: face shape, skin tone and texture, hair, eyes,
brows, mouth, background, lighting), and animates each clip at 200 fps as a neutral start,
an onset-apex-offset of local AU-like deformations a few pixels large at the apex, and a
neutral end, with slight head motion and sensor noise (so RPCA has an identity to remove),
and by default the nuisances every real database has and that carry no class: an eye blink
in half of the clips, a slow head drift of up to 4 px and 1 degree, a brightness flicker of
+-2 gray levels (constants.NUISANCES; tools/make_synthetic.py --blink, --drift-px,
--drift-deg, --flicker, --no-nuisances).

On disk (what `preprocessing.loaders` reads for CASME II):
    OUT/CASME2-coding-20140508.xlsx
    OUT/CASME2_RAW_selected/sub01/EP02_01f/img46.jpg ... (onset..offset, file number =
        absolute frame number, not zero padded), 640x480 JPEG
    OUT/synthetic_stamp.json (parameters; lets a second run with the same ones skip)

With format "casme" the same clips are written as CASME's owners ship it (what the CASME
loader reads; the clips keep their 200 fps timing, only the layout is CASME's): the first
half of the subjects as Section A, the rest as Section B,
    OUT/CASME_A/Section A/Section A.xls     (CASME's header: Subject, Filename, OnsetF, ApexF1,
                                             ApexF2, OffsetF, Onset, Total, AU, Emotion; '\\'
                                             for a missing value)
    OUT/CASME_A/Section A/sub01/EP02_1/EP02_1-46.jpg     (Section A: no padding)
    OUT/CASME_B/Section B/sub07/EP05_3/EP05_3-046.jpg    (Section B: 3-digit padding)
with CASME-style filenames (EP02_01f -> EP02_1). Together with a CASME II-format database of
other subjects this gives a two-database run of the whole pipeline.

Format "samm": SAMM_Micro_FACS_Codes_v2.xlsx (SAMM's 12-line preamble, then its header; the
emotion in SAMM's words, 'repression' written as Contempt, which SAMM has and CASME II's
repression is closest to) and SAMM/006/006_3_4/006_00046.jpg grayscale frames. Format "smic":
no sheet, SMIC_all_raw/HS/s3/micro/negative/s3_ne_0304/image000023.bmp, 8-bit grayscale BMP,
every second frame (SMIC-HS's 100 fps), and no clips of class others (SMIC has none). With
CASME II these make MEGC 2019's three databases (tools/run_psn.sh --protocol megc2019).

The AU codes are written like the real sheet (`4+7`, `R12`, `1+R2+25`; pure numbers as int
cells) and chosen so every class of docs/design.md §1 occurs through the exact-match rule of the
paper's Table 2; what is drawn is what the sheet says (each AU has its own local movement).
Output is deterministic for a seed: same parameters, same bytes (with the same numpy,
OpenCV and zlib builds; another build may round a few pixels differently).
Modules: constants (sizes, classes, AU choices), faces (drawing, AU movements), clips (plans
and rendering), formats (the owners' sheets and folder layouts, also used by the tests' fake
databases), database (generate, the command tools/make_synthetic.py runs).
"""
from synthetic.clips import (NoiseBank, blink_profile, intensity_profile, plan_database,
                             render_frames)
from synthetic.constants import (AU_CHOICES, FPS, HEIGHT, NEGATIVE, NO_NUISANCES, NUISANCES,
                                 OTHERS, POSITIVE, STAMP_NAME, SURPRISE, WIDTH)
from synthetic.database import generate, main, subject_face
from synthetic.faces import au_handles, draw_face
from synthetic.formats import (CASME_HEADER, FORMATS, FRAMES_DIR, HEADER, SHEET_NAME,
                               casme_filename, clip_dir)

__all__ = ["generate", "main", "FORMATS", "draw_face", "subject_face", "plan_database",
           "render_frames", "NoiseBank", "intensity_profile", "blink_profile", "NUISANCES",
           "NO_NUISANCES", "au_handles", "clip_dir",
           "casme_filename", "AU_CHOICES", "FPS", "HEIGHT", "WIDTH", "STAMP_NAME", "POSITIVE",
           "NEGATIVE", "SURPRISE", "OTHERS", "CASME_HEADER", "HEADER", "FRAMES_DIR",
           "SHEET_NAME"]
