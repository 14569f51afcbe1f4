import pytest

from preprocessing.errors import InputError
import pickle

from preprocessing.labels import (ALTERNATIVES, DEFAULT_RULES, cell_text, classify, load_rules,
                                  parse_aus)

# Table 3 of the paper: Others is the fourth class (index 3), typed here, not imported.
OTHERS = 3

# Table 2 of the paper, typed from the paper's text (independent of data/au_classes.csv).
TABLE2 = {
    "I": ["6", "12", "6+12", "6+7+12", "7+12"],
    "II": ["1+2", "5", "25", "1+2+25", "25+26", "5+24"],
    "III": ["23", "4", "4+7", "4+5+7", "17+24", "4+6+7", "4+38"],
    "IV": ["10", "9", "4+9", "4+40", "4+5+40", "4+7+9", "4+9+17", "4+7+10", "4+5+7+9", "7+10"],
    "V": ["1", "15", "1+4", "6+15", "15+17"],
    "VI": ["1+2+4", "20"],
}
TABLE3 = {"I": 0, "II": 2, "III": 1, "IV": 1, "V": 1, "VI": 1}
COMBINATIONS = {frozenset(map(int, c.split("+"))): TABLE3[cat] for cat, cs in TABLE2.items() for c in cs}


def test_rule_file_is_table2():
    assert load_rules() == COMBINATIONS
    assert len(COMBINATIONS) == 35


@pytest.mark.parametrize("aus,expected", sorted(((tuple(sorted(k)), v) for k, v in COMBINATIONS.items())))
def test_each_combination_gets_its_class(aus, expected):
    assert classify(frozenset(aus)) == expected


@pytest.mark.parametrize("combo", sorted(tuple(sorted(k)) for k in COMBINATIONS))
def test_supersets_and_subsets_are_exact_match_only(combo):
    combo = frozenset(combo)
    for extra in (14, 43, 61):  # AUs in no combination
        assert classify(combo | {extra}) == OTHERS
    for au in combo:
        subset = combo - {au}
        assert classify(subset) == COMBINATIONS.get(subset, OTHERS)


def test_others_cases():
    assert classify(frozenset()) == OTHERS
    assert classify({1, 2, 4, 25}) == OTHERS   # 1+2+4 (fear) plus 25
    assert classify({6, 12, 25}) == OTHERS     # happiness plus surprise AU
    assert classify([12, 6]) == 0              # any iterable


@pytest.mark.parametrize("cell,aus", [
    (12, {12}),                         # CASME II pure number: int from openpyxl
    (14.0, {14}),                       # float from xlrd
    ("4+7+L10", {4, 7, 10}),
    ("R2+15", {2, 15}),
    ("1+R2+25", {1, 2, 25}),
    ("15A+17", {15, 17}),
    ("4D+9B", {4, 9}),
    ("L12A", {12}),
    ("A9E", {9}),
    ("T23", {23}),
    ("B18+25", {18, 25}),
    ("U14", {14}),
    ("AU4+AU7", {4, 7}),
    ("r12a + l6", {12, 6}),
    ("L12 + 61", {12, 61}),
    ("  4 +  7  ", {4, 7}),
    ("(R6 or R12)+R15", {6, 15}),       # the first alternative's set (every one: AU_FORMS)
    ("R6 OR R12", {6}),
    ("10A/B", {10}),
    ("R6/R12+25", {6, 25}),
    ("((1+2) or 5)+26", {1, 2, 26}),
    ("ref(7B)", set()),
    ("15A+17+ref(7B)", {15, 17}),
    ("soft focus", set()),
    ("12+soft focus", {12}),
    ("?", set()),
    ("4+9?", {4, 9}),
    ("4+7,10", {4, 7, 10}),
    ("4++7+", {4, 7}),
    (None, set()),
    ("", set()),
])
def test_parse_aus(cell, aus):
    parsed, warnings = parse_aus(cell)
    assert parsed == frozenset(aus)
    assert isinstance(warnings, list)


@pytest.mark.parametrize("cell,token", [
    ("4+M57", "M57"),
    ("12X+6", "12X"),
    ("4+#9", "#9"),
    ("soft focus+4", "soft focus"),
    ("ref(7B)+4", "ref(7B)"),
    ("(R6 or R12)", "R6 or R12"),
    ("R12 or R14", "AU sets 12 | 14"),
    ("12 or bad", "ignored word 'bad'"),    # a word is no side or intensity letter
    ("?", "?"),
    ("4+9?", "9?"),
])
def test_ignored_tokens_are_named_in_a_warning(cell, token):
    parsed, warnings = parse_aus(cell)
    assert any(token in w for w in warnings), warnings


def test_clean_cells_have_no_warnings():
    for cell in (12, "4+7+L10", "R2+15", "15A+17", "L12 + 61"):
        assert parse_aus(cell)[1] == []
    assert parse_aus("M57")[0] == frozenset()


def test_swapped_rule_table(tmp_path):
    path = tmp_path / "rules.csv"
    path.write_text("# my rules\naus,category,emotion,class\n4+7,X,custom,2\n12,I,happiness,0\n")
    rules = load_rules(str(path))
    assert rules == {frozenset({4, 7}): 2, frozenset({12}): 0}
    assert classify({4, 7}, rules) == 2
    assert classify({4}, rules) == OTHERS   # class III in the default table, not in this one


@pytest.mark.parametrize("body,message", [
    ("aus,class\n4+7,5\n", ":2: bad rule"),
    ("aus,class\n4+7,one\n", ":2: bad rule"),
    ("aus,class\nsoft,1\n", ":2: bad rule"),
    ("aus,class\n4+7,1\n7+4,2\n", ":3: '7+4' -> 2 contradicts line 2"),
    ("combination,klass\n4,1\n", "needs columns aus,class"),
])
def test_bad_rule_tables(tmp_path, body, message):
    path = tmp_path / "rules.csv"
    path.write_text(body)
    with pytest.raises(InputError) as err:
        load_rules(str(path))
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_rule_table(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_rules(str(tmp_path / "nope.csv"))
    assert DEFAULT_RULES.endswith("au_classes.csv")


@pytest.mark.parametrize("cell, aus, warned", [
    ("4;7", {4, 7}, False),                       # ';' separates like '+'
    ("ref (7B)+12", {12}, True),                  # ref with a space before '('
    ("((R6 or R12))+15", {6, 15}, True),          # nested parentheses around alternatives
    ("1+(2+(5))", {1, 2, 5}, False),              # nested groups
    ("((1+2)+4)+5", {1, 2, 4, 5}, False),         # '+' inside the outer group only
    ("ref(7B) (4+7)", {4, 7}, True),              # a group after a removed ref
    ("4++7+", {4, 7}, False),                     # empty parts are no tokens
])
def test_separators_refs_and_nesting(cell, aus, warned):
    got, warnings = parse_aus(cell)
    assert got == frozenset(aus) and bool(warnings) == warned, (cell, got, warnings)


def test_an_unbalanced_parenthesis_is_named_and_the_rest_kept():
    got, warnings = parse_aus("4)+7")
    assert got == {7} and warnings == ["unknown AU token '4)' ignored"]


def test_a_lone_question_mark_part_gives_one_warning():
    got, warnings = parse_aus("4+?")
    assert got == {4} and warnings == ["uncertain mark '?' ignored in '?'"]


def test_cell_text_of_empty_and_numeric_cells():
    assert cell_text(None) == "" and cell_text(12.0) == "12" and cell_text(" 4+7 ") == "4+7"
    assert cell_text(12.5) == "12.5"


def test_rule_tables_exclude_unknown_tokens_unless_told():
    assert load_rules().keep_unknown_aus is False
    assert load_rules(keep_unknown_aus=True).keep_unknown_aus is True


def test_full_width_ascii_is_read_and_other_look_alikes_are_not():
    """CAS(ME)^3 part C's '4，11'; a superscript or circled digit is no AU number."""
    assert parse_aus("4，11") == (frozenset({4, 11}), ["full-width characters in '4，11' read as '4,11'"])
    assert parse_aus("４＋１２")[0] == {4, 12}
    assert parse_aus("1²+2")[0] == {2}
    assert parse_aus("12²") == (frozenset(), ["unknown AU token '12²' ignored"])
    assert 1 not in parse_aus("4+①")[0]


# How separators combine with side prefixes and intensity letters: cell -> every AU set it can
# mean, in the order written (one set: no alternatives that matter). A letter standing alone
# beside a '/' or 'or' is a side or intensity of the unit next to it, not a unit of its own.
AU_FORMS = [
    ("A/L12", [{12}]),                      # SAMM 014_6_3: asymmetric or left 12
    ("L12/A", [{12}]),
    ("A / L12", [{12}]),
    ("A or L12", [{12}]),
    ("10A/B", [{10}]),                      # intensity A or B
    ("R12A/B+25", [{12, 25}]),
    ("A/L12+25", [{12, 25}]),
    ("6+A/L12", [{6, 12}]),
    ("6,A/L12", [{6, 12}]),
    ("6;A/L12", [{6, 12}]),
    ("L12 or R12", [{12}]),                 # the same AU on either side: one set
    ("L12/R12", [{12}]),
    ("12A/12B", [{12}]),
    ("L 12", [{12}]),                       # a space inside a unit
    ("12 A", [{12}]),
    ("AU 12", [{12}]),
    ("L12 R14", [{12, 14}]),                # a space between two units reads as '+', noted
    ("12 15", [{12, 15}]),                  # (not AU 1215)
    ("A12, L14", [{12, 14}]),
    ("L12 + 61", [{12, 61}]),
    ("(R6 or R12)+R15", [{6, 15}, {12, 15}]),   # SAMM 007_6_1, 007_6_5
    ("R12 or R14", [{12}, {14}]),               # SAMM 014_5_2
    ("(R6 or R12);R15", [{6, 15}, {12, 15}]),
    ("R6 or R12 + 15", [{6, 15}, {12, 15}]),    # 'or' binds tighter than '+'
    ("R6/R12+25", [{6, 25}, {12, 25}]),
    ("A/L12+(R6 or R14)", [{6, 12}, {12, 14}]),
    ("((1+2) or 5)+26", [{1, 2, 26}, {5, 26}]),
    ("(R6 or R12)+(R15 or R17)", [{6, 15}, {6, 17}, {12, 15}, {12, 17}]),
    ("12 or soft focus", [{12}]),           # a word is dropped, as in '12+soft focus'
    ("12/", [{12}]),                        # an empty alternative is no alternative
]


@pytest.mark.parametrize("cell,readings", AU_FORMS)
def test_au_forms_and_their_readings(cell, readings):
    aus, warnings = parse_aus(cell)
    assert [set(r) for r in aus.readings] == readings, warnings
    assert aus == readings[0]
    assert any(w.startswith("alternatives in") for w in warnings) == (len(readings) > 1)
    assert not any("unknown" in w for w in warnings)


# The cells from SAMM's sheet: (cell, class with every alternative read, with the first).
SAMM_CELLS = [
    ("A/L12", 0, 0),                # 014_6_3, Happiness, objective class I
    ("(R6 or R12)+R15", 3, 1),      # 007_6_1 and 007_6_5, Happiness, objective VII
    ("R12 or R14", 3, 0),           # 014_5_2, Contempt, objective VII
    ("4+(R7 or R9)", 1, 1),         # alternatives that agree keep their class
    ("R6 or R12", 0, 0),
]


@pytest.mark.parametrize("cell,agree,first", SAMM_CELLS)
def test_alternatives_agree_or_first(cell, agree, first):
    aus, _ = parse_aus(cell)
    assert classify(aus) == agree                                   # the default
    assert classify(aus, load_rules(alternatives="agree")) == agree
    assert classify(aus, load_rules(alternatives="first")) == first
    assert classify(aus, dict(load_rules())) == agree               # a plain mapping: the default


def test_alternatives_note_names_every_set_and_the_option_is_checked():
    assert parse_aus("(R6 or R12)+R15")[1] == ["alternatives in '(R6 or R12)+R15': AU sets 6+15 | 12+15"]
    assert ALTERNATIVES == ("agree", "first") and load_rules().alternatives == "agree"
    with pytest.raises(ValueError, match="alternatives must be one of"):
        load_rules(alternatives="any")


def test_a_parsed_set_keeps_its_readings_through_pickle():
    """Clips go to worker processes; the readings must travel with the set."""
    aus = pickle.loads(pickle.dumps(parse_aus("R12 or R14")[0]))
    assert aus == {12} and aus.readings == ({12}, {14}) and classify(aus) == OTHERS


def test_a_space_between_units_is_noted_and_a_rule_table_refuses_alternatives(tmp_path):
    assert parse_aus("12 15")[1] == ["space read as '+' in '12 15'"]
    path = tmp_path / "rules.csv"
    path.write_text("aus,class\nR6 or R12,0\n")
    with pytest.raises(InputError, match=":2: bad rule"):
        load_rules(str(path))


def test_rule_table_saved_by_excel_with_a_bom(tmp_path):
    """Excel's 'CSV UTF-8' starts the file with a byte-order mark; the first column was read
    as '\ufeffaus' and the table refused for a missing aus column."""
    path = tmp_path / "rules.csv"
    path.write_bytes("aus,class\r\n4+7,2\r\n12,0\r\n".encode("utf-8-sig"))
    assert load_rules(str(path)) == {frozenset({4, 7}): 2, frozenset({12}): 0}
