"""The paper's numbers (psn/data/paper_results.json) held to the paper's tables.

Every value in the file was checked against the printed tables when this checksum was recorded
(2026-11-28: Tables 4, 5, 6 (PSN row), 7 (PSN), 9; 2026-12-06: Table 5's STSTNet row). Change a
value only after checking it against the paper again, then record the new checksum here. The cross-table checks below
catch a typo independently of the checksum: the paper prints several of its numbers twice.
"""
import hashlib
import json

import numpy as np
import pytest

from psn import metrics

CHECKED_SHA256 = "e7b08b7555e2d3f1144373d4cdb3a3be2b86d05424ac3525da31d49049d93c9e"


@pytest.fixture(scope="module")
def paper():
    with open(metrics.PAPER_RESULTS_PATH) as f:
        return json.load(f)


def test_the_file_is_the_one_checked_against_the_paper(paper):
    values = {k: v for k, v in paper.items() if k != "_source"}
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()
    assert digest == CHECKED_SHA256, (
        "psn/data/paper_results.json changed: check every value against the paper's tables, "
        "then record the new checksum in this test")


def test_table4_rows_and_columns_add_up(paper):
    t4 = paper["table4_counts"]
    for db, row in t4.items():
        assert sum(row[:4]) == row[4], db
    per_class = np.sum([t4[db] for db in ("casme", "casme2", "casme2sq", "samm")], axis=0)
    assert per_class.tolist() == t4["total"] and t4["total"][4] == 650


def test_table7_holds_every_clip_of_table4_by_class(paper):
    confusion = np.array(paper["table7_psn_confusion"])
    assert confusion.sum(axis=1).tolist() == paper["table4_counts"]["total"][:4]


def test_numbers_the_paper_prints_twice_agree(paper):
    t9 = {(r["backbone"], r["fusion"]): r for r in paper["table9"]}
    psn = t9["AlexNet", "SUM"]                      # PSN's own configuration
    assert psn["rr_mean"] == paper["table5_psn"]["rr"]
    assert psn["f1"] == paper["table5_psn"]["f1"] == paper["table6_psn"]["combined"]["uf1"]
    # Table 7's matrix pools to Table 5's recognition rate: 422 of 650 clips.
    confusion = np.array(paper["table7_psn_confusion"])
    assert np.trace(confusion) == 422
    assert round(np.trace(confusion) / confusion.sum(), 4) == paper["table5_psn"]["rr"]
    assert len(t9) == 9 and {b for b, _ in t9} == {"AlexNet", "VGG16", "ResNet10"}
    # Ranges the paper's formats imply: rates are fractions, RR_std a fraction under 0.1.
    for r in paper["table9"]:
        assert 0.6 < r["rr_mean"] < 0.66 and 0.04 <= r["rr_std"] < 0.09 and 0.45 <= r["f1"] < 0.53


def test_metrics_serves_exactly_the_file(paper):
    assert metrics.PAPER_PSN == {"rr": 0.6492, "f1": 0.5211, "uf1": 0.5211, "uar": 0.4871,
                                 "rr_std": 0.084}
    assert metrics.PAPER_PSN_BY_DATABASE == {db: v for db, v in paper["table6_psn"].items()
                                             if db != "combined"}
    assert metrics.PAPER_TABLE9[("ResNet10", "CONCAT")] == {"rr_mean": 0.6154, "rr_std": 0.042,
                                                            "f1": 0.4510}
    assert np.array_equal(metrics.PAPER_PSN_CONFUSION, paper["table7_psn_confusion"])
