"""preprocessing.cli (tools/preprocess.py): its subcommands, flags and option parsers; bad
input is one line and exit 2. The `run` and `fig3` tests use the preprocessing run of
conftest.py's `first` fixture (on copies where they write)."""
import os

import cv2
import pytest

from pipeline_helpers import CLI_ARGS, copy_run, manifest_of
from preprocessing.cli import main as cli_main
from preprocessing.cli import parse_augment, parse_face_box
from preprocessing.clip_chain import Options
from preprocessing.errors import InputError


def test_fig3_draws_the_clips_named_in_their_order(first, tmp_path, capsys):
    """Fig. 3 for chosen clips: a title bar, the 16 raw crops and E per clip, in the order
    given (by clip name or SUBJECT/CLIP)."""
    from preprocessing import cli
    from preprocessing.contact_sheet import named_clips
    out = first[0]
    rows = [r for r in manifest_of(out) if r["included"] == "1"]
    a, b = rows[2], rows[0]
    png = str(tmp_path / "fig3.png")
    assert cli.main(["fig3", "--data", out, "--png", png,
                     "--clips", "%s,%s/%s" % (a["clip"], b["subject"], b["clip"])]) == 0
    img = cv2.imread(png)
    assert img.shape == (2 * (22 + 112 + 112 + 4), 16 * 112, 3)
    assert [r["clip"] for r in named_clips(rows, [a["clip"], b["clip"]])] == [a["clip"], b["clip"]]
    assert "wrote %s (2 clips)" % png in capsys.readouterr().out


def test_fig3_refuses_names_it_cannot_draw(first, capsys):
    from preprocessing import cli
    from preprocessing.contact_sheet import named_clips
    rows = manifest_of(first[0])
    assert cli.main(["fig3", "--data", first[0], "--clips", "no_such_clip"]) == 2
    assert "no clip named 'no_such_clip'" in capsys.readouterr().err
    # --out named the folder it reads: that is --data now, and --out says so.
    with pytest.raises(SystemExit) as e:
        cli.main(["fig3", "--out", first[0], "--clips", "x"])
    assert e.value.code == 2 and "fig3 reads the folder of `run` from --data" in capsys.readouterr().err
    excluded = dict(rows[0], included="0", reason="no face found")
    with pytest.raises(InputError, match="was excluded \\(no face found\\)"):
        named_clips([excluded], [excluded["clip"]])
    twin = dict(rows[0], subject="other/s9")
    with pytest.raises(InputError, match="names 2 clips"):
        named_clips([rows[0], twin], [rows[0]["clip"]])


def test_cli_run_matches_the_api_and_prints_the_summary(first, roots, tmp_path, capsys):
    out = copy_run(first, tmp_path)
    rc = cli_main(["run", "--casme2", roots[0]["casme2"], "--samm", roots[0]["samm"],
                   "--out", out] + CLI_ARGS)
    assert rc == 0
    text = capsys.readouterr().out
    # Same options through the CLI: every clip and shard comes from the first run.
    assert "0 computed, 16 from the cache" in text and "shards: 0 of 4 written" in text
    assert "casme2            7        1" in text


def test_cli_bad_input_is_a_clear_error(roots, tmp_path, capsys):
    out = str(tmp_path / "o")
    missing = str(tmp_path / "nowhere")
    assert cli_main(["run", "--casme2", missing, "--out", out]) == 2
    assert missing in capsys.readouterr().err
    base = ["run", "--samm", roots[0]["samm"], "--out", out]
    assert cli_main(base + ["--augment", "flip,spin"]) == 2
    assert "unknown augmentation 'spin'" in capsys.readouterr().err
    assert cli_main(base + ["--face-box", "1,2,3"]) == 2
    assert "--face-box '1,2,3'" in capsys.readouterr().err
    assert cli_main(base + ["--sparsity", "1.5"]) == 2
    assert cli_main(["run", "--samm", roots[0]["samm"], "--out", str(tmp_path / "my out")]) == 2
    assert "whitespace" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(base + ["--lam", "0.01", "--sparsity", "0.25"])
    assert not os.path.exists(out) or not os.listdir(out) or "manifest.csv" not in os.listdir(out)


def test_rpca_default_is_a_share_of_non_zeros_and_the_flags_choose_others(capsys, roots,
                                                                           tmp_path):
    """Fig. 10's best band is the default (lambda per clip for 25 % non-zeros); --lam L a
    fixed lambda, --lam standard the fixed 1/sqrt(12544), --sparsity S another share."""
    from preprocessing.cli import rpca_choice
    from preprocessing.rpca import DEFAULT_SPARSITY
    assert DEFAULT_SPARSITY == 0.25
    assert Options().sparsity == 0.25 and Options().lam is None
    assert Options(lam=0.02).sparsity is None and Options(sparsity=None).sparsity is None
    assert Options(sparsity=0.1).sparsity == 0.1
    with pytest.raises(InputError, match="not both"):
        Options(lam=0.02, sparsity=0.25)
    assert Options(**rpca_choice()) == Options()
    assert Options(**rpca_choice("0.02")) == Options(lam=0.02)
    assert Options(**rpca_choice("standard")) == Options(sparsity=None)
    with pytest.raises(InputError, match="--lam default is now --lam standard"):
        rpca_choice("default")            # its old name, which was not the default
    assert Options(**rpca_choice(None, 0.3)) == Options(sparsity=0.3)
    assert Options(sparsity=None).stamp()["sparsity"] is None
    for bad in (("x", None), ("0.1", 0.2)):
        with pytest.raises(InputError):
            rpca_choice(*bad)
    base = ["run", "--samm", roots[0]["samm"], "--out", str(tmp_path / "o")]
    assert cli_main(base + ["--lam", "tiny"]) == 2
    assert "--lam takes a number or 'standard'" in capsys.readouterr().err


def test_option_parsers():
    assert parse_augment(None) == ("flip", "rot-10", "rot-5", "rot+5", "rot+10")
    assert parse_augment("none") == ()
    assert parse_augment("flip,rot5,rot-5,flip_rot+10") == ("flip", "rot+5", "rot-5", "flip_rot+10")
    with pytest.raises(InputError, match="twice"):
        parse_augment("flip,flip")
    assert parse_face_box("10,20,30,40") == (10, 20, 30, 40)
    with pytest.raises(InputError):
        parse_face_box("10,20,0,40")


def test_the_fold_count_is_n_folds_and_the_old_flag_says_so(roots, tmp_path, capsys):
    """preprocess.py's --folds was a count where run_folds.py's --folds is a list of fold
    numbers: the count is --n-folds, and --folds names it."""
    out = str(tmp_path / "old")
    with pytest.raises(SystemExit) as e:
        cli_main(["run", "--casme2", roots[0]["casme2"], "--folds", "2", "--out", out])
    assert e.value.code == 2
    assert "the fold count is --n-folds K" in capsys.readouterr().err
    assert not os.path.exists(out)
