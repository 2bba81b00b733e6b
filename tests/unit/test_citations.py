"""Which sources an answer uses: its [n] markers, or a run of words quoted from a source."""

from __future__ import annotations

from onnxvec.chat.citations import markers, used_sources
from onnxvec.storage.chunks import Hit


def hit(text: str, number: int = 0) -> Hit:
    return Hit(number, number, f"doc-{number}", None, {}, 0, text, 0.1, 0.9)


SOURCES = [
    hit("The checkpoint_timeout parameter sets the maximum time between automatic WAL checkpoints.", 1),
    hit("VACUUM reclaims storage occupied by dead tuples in a table or an index.", 2),
    hit("A sequence is a special single-row table used to generate unique identifiers.", 3),
]


def test_markers_in_every_form() -> None:
    assert markers("As [2] says, and [1, 3] agree; see also [4][5].") == {1, 2, 3, 4, 5}
    assert markers("An array like a[1:2] or a list [x] is not a marker.") == set()


def test_a_marker_names_its_source_and_one_out_of_range_names_nothing() -> None:
    assert used_sources(["It is set by checkpoint_timeout [1], not [7] or [0]."], SOURCES) == {1: "marker"}


def test_a_quoted_run_of_five_words_counts_without_a_marker() -> None:
    answer = "VACUUM reclaims storage occupied by dead tuples."
    assert used_sources([answer], SOURCES) == {2: "overlap"}
    assert used_sources(["Storage grows quickly when nobody cleans tables."], SOURCES) == {}  # one word shared


def test_a_fact_restated_in_other_words_counts_but_the_question_echoed_does_not() -> None:
    sources = [
        hit("The zorbctl tool reads its settings from /etc/zorb/zorb.conf unless --config names another file.", 1),
        hit("The max_glide_connections setting is how many clients Zorbulax serves at once; it defaults to 250.", 2),
        hit("To stop a running Zorbulax server cleanly, send it SIGTERM; SIGKILL loses unflushed changes.", 3),
    ]
    asked = "How many clients does Zorbulax serve at once by default?"
    assert used_sources(["Zorbulax serves at once by default 250 clients."], sources, asked) == {2: "overlap"}
    asked = "Which signal stops a Zorbulax server cleanly?"
    echo = "A Zorbulax server stops cleanly with a signal."
    assert used_sources([echo], sources, asked) == {}  # only the question's words: no sign of a source
    assert used_sources([echo], sources) == {3: "overlap"}  # without the question they would count


def test_an_answer_that_uses_nothing_cites_nothing() -> None:
    assert used_sources(["I do not know."], SOURCES) == {}
    assert used_sources([""], []) == {}


def test_every_choice_counts_and_a_marker_wins_over_overlap() -> None:
    answers = ["a special single-row table used to generate ids [3]", "see [1]"]
    assert used_sources(answers, SOURCES) == {1: "marker", 3: "marker"}
    assert used_sources(["a special single-row table used to generate ids", "[1]"], SOURCES) == {
        1: "marker",
        3: "overlap",
    }
