"""MEGC 2019's scores as the challenge reports them: UF1 and UAR on the pooled leave-one-
subject-out predictions, for the composite and for each database restricted from the same
predictions, with the published baselines (psn/data/megc2019_baselines.json, each number with
its source) beside ours, as a table (Markdown, CSV) and a bar chart."""
import json
import os

from preprocessing.atomic import write_atomic
from psn import metrics, plots
from psn.report.files import write_csv
from psn.report.markdown import f4, md_table

BASELINES_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "data", "megc2019_baselines.json")
PARTS = ("composite", "smic-hs", "casme2", "samm")
PART_TITLES = {"composite": "composite", "smic-hs": "SMIC-HS", "casme2": "CASME II",
               "samm": "SAMM"}


def load_baselines(path=BASELINES_PATH):
    with open(path) as f:
        return json.load(f)


def megc_scores(labels, preds, databases, n_classes=3):
    """{part: {'uf1', 'uar', 'n'}} for the composite and each database present."""
    return {part: {"uf1": s.uf1, "uar": s.uar, "n": s.n}
            for part, s in metrics.by_database(labels, preds, databases, n_classes).items()}


# The rows of runs named by their model (run_psn's --models): PSN as the paper spells it, the
# flow baselines trained here (psn.nets ststnet, off_apexnet) named apart from the published rows
# of the same methods.
ROW_NAMES = {"psn": "PSN", "ststnet": "STSTNet (trained here)",
             "off_apexnet": "OFF-ApexNet (trained here)"}

# How this project's own number is selected: the schedule's last iteration (no test fold
# chooses anything).
OURS_SELECTION = "final"
OURS_SELECTION_TEXT = "the schedule's last iteration (leak-free)"


def methods(ours, name="PSN", baselines=None, more=()):
    """The baselines in the file's order, each followed by its recomputed row where the file
    has one (a number the authors' own per-clip log gives otherwise), then ours, then `more`
    ([(name, scores)]: other runs trained here on the same folds, e.g. the optical-flow
    baselines; with them every run's source says so, as none is "the" run): dicts with name,
    source, selection, n_clips and a {'uf1', 'uar'} per part (absent where not published)."""
    baselines = load_baselines() if baselines is None else baselines
    rows = []
    for m in baselines["methods"]:
        rows.append(m)
        if "recomputed" in m:
            again = dict(m["recomputed"])
            rows.append(dict(again, name=m["name"] + " (recomputed)", source=again.pop("source"),
                             selection=m.get("selection", "unknown"), n_clips=m.get("n_clips")))
    for run_name, scores in [(name, ours)] + list(more):
        n = (scores.get("composite") or {}).get("n")
        rows.append(dict(scores, name=ROW_NAMES.get(run_name, run_name),
                         source="trained here, same folds" if more else "this run",
                         selection=OURS_SELECTION, n_clips=n))
    return rows


def _values(m):
    return [(m.get(part) or {}).get(k) for part in PARTS for k in ("uf1", "uar")]


def selection_text(m, baselines):
    key = m.get("selection", "unknown")
    if key == OURS_SELECTION:
        return OURS_SELECTION_TEXT
    return baselines.get("selections", {}).get(key, key)


def table_rows(ours, name="PSN", baselines=None, more=()):
    """[[method, UF1, UAR per part ..., selected by, clips, source]] as the Markdown table
    prints them."""
    baselines = load_baselines() if baselines is None else baselines
    return [[m["name"]] + [f4(v) for v in _values(m)]
            + [selection_text(m, baselines), m.get("n_clips") or "n/a", m["source"]]
            for m in methods(ours, name, baselines, more)]


def write_megc(labels, preds, databases, out_dir, name="PSN", n_classes=3, note="", more=()):
    """megc2019.md / .csv / .png in out_dir (note: a line said above the table, e.g. that the
    data are synthetic; more: [(name, megc_scores)] of other runs on the same folds, each a row
    under ours); returns our scores."""
    ours = megc_scores(labels, preds, databases, n_classes)
    baselines = load_baselines()
    header = ["method"] + ["%s %s" % (PART_TITLES[p], k) for p in PARTS for k in ("UF1", "UAR")] \
        + ["selected by", "clips", "source"]
    rows = methods(ours, name, baselines, more)
    os.makedirs(out_dir, exist_ok=True)
    order = [p for p in PARTS if p in ours] + [p for p in ours if p not in PARTS]
    counts = ", ".join("%s %d" % (PART_TITLES.get(p, p), ours[p]["n"]) for p in order)
    write_atomic(os.path.join(out_dir, "megc2019.md"),
                 "# MEGC 2019 composite: UF1 and UAR\n\n" + (note + "\n\n" if note else "")
                 + baselines["note"] + "\n\n" + baselines.get("selection_note", "") + "\n\nClips: "
                 + counts + ". n/a: not published.\n\n"
                 + md_table(header, table_rows(ours, name, baselines, more))
                 + "\n![UF1 and UAR](megc2019.png)\n")
    write_csv(os.path.join(out_dir, "megc2019.csv"), header,
              [[m["name"]] + _values(m) + [m.get("selection", "unknown"), m.get("n_clips"),
                                           m["source"]] for m in rows])
    plots.megc_bars([{"name": m["name"], "uf1": m["composite"]["uf1"],
                      "uar": m["composite"]["uar"],
                      "optimistic": m.get("selection") == "test_best_epoch"} for m in rows],
                    os.path.join(out_dir, "megc2019.png"))
    return ours
