"""The mutation tool (tests/mutation.py) itself: its operators, keys and equivalent list."""
import json

import pytest

import mutation

SOURCE = '''
import numpy as np

LIMIT = 3


def f(x, flag=True):
    """Docstring: never mutated."""
    y = np.max(x) + 1
    if y < LIMIT and not flag:
        raise ValueError("small")
    return y * 2
'''


def test_operators_on_a_small_function():
    mutants = mutation.python_mutants("toy.py", SOURCE)
    seen = {(m.op, m.before, m.after) for m, _ in mutants}
    expected = {
        ("number", "LIMIT = 3", "LIMIT = 4"), ("number", "LIMIT = 3", "LIMIT = 2"),
        ("bool", "x, flag=True", "x, flag=False"),
        ("call", "np.max(x)", "np.min(x)"),
        ("binop", "np.max(x) + 1", "np.max(x) - 1"),
        ("compare", "y < LIMIT", "y <= LIMIT"), ("compare", "y < LIMIT", "y >= LIMIT"),
        ("boolop", "y < LIMIT and (not flag)", "y < LIMIT or not flag"),
        ("unary", "not flag", "flag"),
        ("delete", "raise ValueError('small')", "pass"),
        ("return", "return y * 2", "return"),
        ("binop", "y * 2", "y / 2"),
        ("delete", "y = np.max(x) + 1", "pass"),
    }
    assert expected <= seen, expected - seen
    assert not any("Docstring" in m.before for m, _ in mutants)
    # Every mutant is valid Python that differs from the original.
    for m, text in mutants:
        compile(text, "toy.py", "exec")
        assert text != SOURCE


def test_keys_do_not_depend_on_line_numbers():
    a = {m.key for m, _ in mutation.python_mutants("toy.py", SOURCE)}
    b = {m.key for m, _ in mutation.python_mutants("toy.py", "\n\n# a comment\n" + SOURCE)}
    assert a == b and len(a) == len(mutation.python_mutants("toy.py", SOURCE))


def test_every_number_of_a_data_file_is_changed_once():
    text = json.dumps({"a": [1, 2.5], "b": {"c": 3}, "d": "text", "e": True})
    mutants = mutation.data_mutants("x.json", text)
    assert sorted((m.qualname, m.after) for m, _ in mutants) == [
        ("a/0", "2"), ("a/1", "2.51"), ("b/c", "4")]


def test_scores_count_equivalent_mutants_out():
    entries = [{"status": s} for s in ("killed", "timeout", "survived", "equivalent")]
    s = mutation.score(entries)
    assert (s["killed"], s["survived"], s["equivalent"]) == (2, 1, 1)
    assert s["score"] == pytest.approx(2 / 3)


@pytest.mark.slow
def test_the_equivalent_list_names_existing_mutants_with_reasons():
    listed = mutation.load_equivalent()
    keys = {m.key for path in mutation.TARGETS for m, _ in mutation.mutants_of(path)}
    stale = sorted(set(listed) - keys)
    assert not stale, "tests/mutation_equivalent.json lists mutants that no longer exist: %s" % stale
    assert all(len(why) > 20 for why in listed.values())


def test_rescore_applies_the_current_list():
    key = next(iter(mutation.load_equivalent()))
    results = {"modules": {"m.py": {"mutants": [
        {"key": key, "status": "survived"}, {"key": "other", "status": "equivalent"},
        {"key": "x", "status": "killed"}]}}}
    statuses = [e["status"] for e in mutation.rescore(results)["modules"]["m.py"]["mutants"]]
    assert statuses == ["equivalent", "survived", "killed"]
