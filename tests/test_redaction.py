"""Redaction finds personal numbers however the recognizer spelled them (issue 22, items 13-14): hypothesis
draws phone, resident registration and card numbers, spells each group in ASCII or Sino-Korean numerals
with any separators, puts them in a sentence, cuts them across two finals, and asks for the kinds in any
order."""

from __future__ import annotations

from hypothesis import given, strategies as st

from fakertzr.redaction import KINDS, hide_digits, redact, redact_finals

SPOKEN = dict(zip("0123456789", "공일이삼사오육칠팔구"))
SEPARATORS = ["-", " - ", ".", " ", "", " -", "- "]


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text("0123456789", min_size=n, max_size=n)


NUMBERS = {  # each number as its groups
    "phone": st.one_of(
        st.tuples(st.sampled_from(["010", "011", "016", "019"]), digits(4), digits(4)),
        st.tuples(st.just("02"), st.sampled_from([3, 4]).flatmap(digits), digits(4)),
        st.tuples(st.sampled_from(["031", "051", "064"]), st.sampled_from([3, 4]).flatmap(digits), digits(4))),
    "rrn": st.tuples(st.tuples(digits(2), st.sampled_from(["01", "07", "12"]), st.sampled_from(["01", "15", "31"]))
                     .map("".join), st.tuples(st.sampled_from("1234"), digits(6)).map("".join)),
    "card": st.tuples(st.sampled_from(["4", "5", "9"]).flatmap(lambda a: digits(3).map(lambda b: a + b)),
                      digits(4), digits(4), digits(4)),
}


@st.composite
def spelled(draw, kind: str) -> tuple[str, list[str]]:
    """A number as a recognizer may write it, and its groups as written."""
    written = [g if draw(st.booleans()) else "".join(SPOKEN[c] for c in g) for g in draw(NUMBERS[kind])]
    seps = [draw(st.sampled_from(SEPARATORS)) for _ in written[1:]]
    text = written[0] + "".join(s + g for s, g in zip(seps, written[1:]))
    return text, written


SENTENCES = st.sampled_from([("제 번호는 ", " 입니다"), ("", ""), ("네 ", "이에요"), ("번호 ", "요 감사합니다"),
                             ("카드 번호가 ", " 이고요"), ("어 그게 ", ""), ("주민번호는 ", "입니다")])


def leftover_digits(text: str) -> list[str]:
    """What is still a digit in ``text`` outside the replacement tokens (ASCII or a numeral syllable pair)."""
    plain = text
    for kind in (*KINDS, "redacted"):
        plain = plain.replace(f"<{kind}>", " ")
    return [c for c in plain if c.isdigit()] + [w for w in plain.split() if len(w) >= 2 and all(c in SPOKEN.values() for c in w[:2])]


@given(st.sampled_from(KINDS).flatmap(lambda k: st.tuples(st.just(k), spelled(k))), SENTENCES, st.permutations(KINDS))
def test_a_number_in_any_spelling_is_replaced_by_its_kind_whatever_the_order_of_kinds(drawn, sentence, order):
    kind, (number, _) = drawn
    before, after = sentence
    counts: dict[str, int] = {}
    out = redact(before + number + after, order, counts)
    assert f"<{kind}>" in out and counts == {kind: 1}, (number, out)
    assert out.startswith(before) and not leftover_digits(out), (number, out)
    assert redact(before + number + after, KINDS, {}) == out  # the order kinds are asked in changes nothing


@given(st.sampled_from(KINDS).flatmap(lambda k: st.tuples(st.just(k), spelled(k))), st.data())
def test_a_number_cut_across_two_finals_is_found_across_the_cut(drawn, data):
    kind, (number, groups) = drawn
    cut = data.draw(st.integers(1, len(groups) - 1))
    at = number.index(groups[cut], len("".join(groups[:cut])))  # where group ``cut`` begins
    first, second = "제 번호는 " + number[:at].rstrip(" -."), number[at:].lstrip(" -.") + " 입니다"
    counts: dict[str, int] = {}
    out = redact_finals([first, second, "감사합니다"], KINDS, counts)
    assert counts == {kind: 1}, (first, second, out)
    assert out[2] == "감사합니다" and not leftover_digits(out[0]) and not leftover_digits(out[1]), out


@given(st.sampled_from(KINDS).flatmap(spelled), st.data())
def test_a_partial_keeps_no_run_of_four_digits(drawn, data):
    number, _ = drawn
    grown = data.draw(st.integers(4, len(number)))
    partial = number[:grown]
    if sum(c.isdigit() or c in SPOKEN.values() for c in partial) < 4:
        return  # too little of the number yet to be told from any other digits
    assert not leftover_digits(hide_digits("제 번호는 " + partial, {})), partial


def test_ordinary_speech_and_short_numbers_are_left_as_they_are():
    for text in ("오늘 이번에 일이 많아서 사이 좋게 지냈어요", "3시 30분에 2명 예약이요", "1588-1234 고객센터죠",
                 "2026년 12월 3일에 주문했어요", "주문번호 A-1234 입니다", "구십구 퍼센트요", "일단 오일 교환이요"):
        counts: dict[str, int] = {}
        assert redact(text, KINDS, counts) == text and counts == {}, text


def test_a_rrn_is_not_taken_for_a_phone_number_in_any_order():
    # with the patterns applied kind by kind, phone first, 900101-1234567 became "8505<phone>"-like pieces
    for order in (("phone", "rrn", "card"), ("rrn", "phone", "card"), ("card", "phone", "rrn")):
        assert redact("주민번호 850501-2345678 이요", order, {}) == "주민번호 <rrn> 이요"


def test_recorders_redact_everything_unless_told_otherwise():
    from fakertzr.cli import record_options
    from fakertzr.errors import FakeRtzrError

    def kinds(redact=None, keep_raw=False):
        return record_options(redact, "call", "https://openapi.vito.ai", (0,), extra_kinds=("dtmf",), keep_raw=keep_raw)

    assert kinds() == ("phone", "rrn", "card", "dtmf")  # a recording of a real call is personal data
    assert kinds("card,phone") == ("card", "phone") and kinds(keep_raw=True) == ()
    for bad, says in ((dict(redact="phone", keep_raw=True), "goes without --redact"), (dict(redact=","), "needs one or more")):
        try:
            kinds(**bad)
        except FakeRtzrError as exc:
            assert says in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")
