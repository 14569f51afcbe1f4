"""The synthetic database's sizes, classes and AU choices (shared by the drawing, the clip
plans and the writers)."""
STAMP_NAME = "synthetic_stamp.json"
WIDTH, HEIGHT = 640, 480
FPS = 200
# Bump when the drawing or the plan changes, so stale databases are regenerated.
GENERATOR_VERSION = 1

POSITIVE, NEGATIVE, SURPRISE, OTHERS = 0, 1, 2, 3
# Class shares of the paper's Table 4 (all 650 clips: 55/280/50/265), moved towards the
# small classes so that each has enough clips for 10 stratified folds.
CLASS_SHARES = (0.12, 0.37, 0.10, 0.41)
MIN_PER_CLASS = 10

# (AU cell, weight, estimated emotion). Every cell's AU set is checked against Table 2 by
# the tests; side prefixes follow FACS (L = the subject's left = the image's right).
AU_CHOICES = {
    POSITIVE: (("12", 3, "happiness"), ("6+12", 3, "happiness"), ("R12", 1, "happiness"),
               ("L12", 1, "happiness"), ("6+R12", 1, "happiness"), ("7+12", 1, "happiness")),
    NEGATIVE: (("4", 3, "repression"), ("4+7", 3, "disgust"), ("9", 2, "disgust"),
               ("4+9", 1, "disgust"), ("10", 1, "disgust"), ("L10", 1, "disgust"),
               ("15", 2, "sadness"), ("15+17", 1, "sadness"), ("4+7+10", 1, "disgust"),
               ("7+10", 1, "disgust"), ("R15", 1, "sadness"), ("4+R7", 1, "repression")),
    SURPRISE: (("1+2", 4, "surprise"), ("25", 2, "surprise"), ("1+2+25", 2, "surprise"),
               ("1+R2", 1, "surprise"), ("25+26", 1, "surprise")),
    OTHERS: (("14", 4, "others"), ("R14", 2, "others"), ("L14", 2, "others"),
             ("14+17", 1, "others"), ("4+14", 1, "repression"), ("R12+14", 1, "others"),
             ("18", 1, "others")),
}

# Nuisances that every real database has and that carry no class (tools/make_synthetic.py
# options; on by default, so the demo's temporal stream meets them): the chance that a clip
# holds an eye blink, the largest slow head drift over a clip (pixels of the 640 x 480 frame,
# degrees of roll) and the brightness flicker (gray levels, fresh every frame).
NUISANCES = {"blink": 0.5, "drift_px": 4.0, "drift_deg": 1.0, "flicker": 2.0}
NO_NUISANCES = {"blink": 0.0, "drift_px": 0.0, "drift_deg": 0.0, "flicker": 0.0}
