"""Passage compression keeps the sentences that answer the question, in order, marks what it left
out, and keeps a passage whole when there is nothing to leave out or nothing matches."""

from onthejob.rag.answer import rag_messages
from onthejob.rag.compress import GAP, compress, sentences_of
from onthejob.rag.store import Chunk, Hit

POLICY = ("Confirmed staff are entitled to 18 days of paid annual leave per calendar year. Staff park at the back of the building.\n"
          "Unused annual leave of up to 5 days may be carried forward.\n\n"
          "4.2 Where a public holiday falls on a rest day (i.e. Sunday), staff get the next working day as a paid holiday.\n"
          "4.3 Medical leave needs a certificate from a registered doctor.")


def test_sentences_split_at_full_stops_blank_lines_and_clause_numbers_but_not_abbreviations():
    assert sentences_of(POLICY) == [
        "Confirmed staff are entitled to 18 days of paid annual leave per calendar year.",
        "Staff park at the back of the building.",
        "Unused annual leave of up to 5 days may be carried forward.",
        "4.2 Where a public holiday falls on a rest day (i.e. Sunday), staff get the next working day as a paid holiday.",
        "4.3 Medical leave needs a certificate from a registered doctor.",
    ]


def test_the_best_matching_sentences_are_kept_in_order_with_gaps_marked():
    kept = compress(POLICY, "What happens when a public holiday falls on a rest day?", sentences=1)
    assert kept == f"{GAP} 4.2 Where a public holiday falls on a rest day (i.e. Sunday), staff get the next working day as a paid holiday. {GAP}"
    # rare words weigh more than the one every leave sentence shares: "carried forward" picks sentence 3
    two = compress(POLICY, "How much annual leave can be carried forward, and how many days is it?", sentences=2)
    assert two == (f"Confirmed staff are entitled to 18 days of paid annual leave per calendar year. {GAP} "
                   f"Unused annual leave of up to 5 days may be carried forward. {GAP}")


def test_a_short_passage_or_one_that_shares_no_word_is_kept_whole():
    assert compress(POLICY, "Where do staff park?", sentences=5) == POLICY
    assert compress(POLICY, "Quarterly revenue targets?", sentences=1) == POLICY


def test_the_prompt_holds_compressed_passages_and_the_sources_the_whole_text():
    hit = Hit(Chunk("h#0", "handbook.pdf", POLICY, {"page": 3}), score=1.0, dense=0.9, sparse=None, rank=1)
    wrapped, sources = rag_messages([{"role": "user", "content": "Is a doctor's certificate needed for medical leave?"}], [hit], sentences=1)
    prompt = wrapped[-1]["content"]
    assert f"[1] handbook.pdf, page 3\n{GAP} 4.3 Medical leave needs a certificate from a registered doctor." in prompt
    assert "18 days" not in prompt and sources[0]["text"] == POLICY
