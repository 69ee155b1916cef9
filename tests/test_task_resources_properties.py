"""Property-based tests of `parse_quantity` against the Kubernetes quantity grammar.

The grammar, from k8s.io/apimachinery/pkg/api/resource/quantity.go:

    <quantity>        ::= <signedNumber><suffix>
    <signedNumber>    ::= <number> | <sign><number>
    <sign>            ::= "+" | "-"
    <number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
    <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI>
    <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei
    <decimalSI>       ::= n | u | m | "" | k | M | G | T | P | E
    <decimalExponent> ::= "e" <signedNumber> | "E" <signedNumber>   (an integer)

Digits are ASCII; nothing else (no blanks) is allowed; Kubernetes clamps values above 2^63-1.
A request must be positive, so a valid quantity <= 0 gets its own clear error.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import example, given, settings, strategies as st

from ktx_dagster.task_resources import TaskResourcesError, parse_quantity

BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
GRAMMAR = re.compile(r"[+-]?([0-9]+|[0-9]+\.[0-9]*|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?")
MAX = Decimal(2**63 - 1)

digits = st.text(alphabet="0123456789", min_size=1, max_size=12)
numbers = st.one_of(digits, st.tuples(digits, digits).map(".".join), digits.map(lambda d: d + "."),
                    digits.map(lambda d: "." + d))
suffixes = st.one_of(st.sampled_from([*BINARY, *DECIMAL]),
                     st.tuples(st.sampled_from("eE"), st.sampled_from(["", "+", "-"]),
                               st.integers(0, 40).map(str)).map("".join))


def kubernetes_value(text: str) -> Decimal:
    """The value Kubernetes gives a quantity of the grammar (computed here independently)."""
    m = GRAMMAR.fullmatch(text)
    assert m, text
    number, suffix = Decimal(text[: m.start(2)] if m.group(2) else text), m.group(2) or ""
    if suffix in BINARY:
        value = number * Decimal(1024) ** BINARY[suffix]
    elif suffix in DECIMAL:
        value = number.scaleb(DECIMAL[suffix])
    else:
        value = number.scaleb(int(suffix[1:]))
    return min(value, MAX)


@settings(max_examples=300, deadline=None)
@given(sign=st.sampled_from(["", "+", "-"]), number=numbers, suffix=suffixes)
@example(sign="", number="1", suffix="e3")
@example(sign="-", number="1", suffix="")
@example(sign="", number="0", suffix="Mi")
def test_valid_quantities_parse_to_the_kubernetes_value(sign, number, suffix):
    text = sign + number + suffix
    expected = kubernetes_value(text)
    if expected > 0:
        assert parse_quantity(text, field_name="memory") == pytest.approx(expected, rel=Decimal("1e-20"))
    else:
        with pytest.raises(TaskResourcesError, match=r"memory='.*' must be greater than zero; use e\.g\. '250Mi'"):
            parse_quantity(text, field_name="memory")


@settings(max_examples=500, deadline=None)
@given(st.one_of(
    st.text(max_size=12),
    st.text(alphabet="0123456789.+-eEKMGTPkmnuib ٣\n", max_size=10),  # near misses
))
@example("1.5GG")
@example("1e3Mi")
@example(" 1Gi")
@example("1Gi\n")
@example("٣Gi")  # an Arabic-Indic digit
@example("1K")
def test_any_text_is_accepted_exactly_when_kubernetes_accepts_it(text):
    try:
        value = parse_quantity(text, field_name="cpu", owner="t")
    except TaskResourcesError as exc:
        message = str(exc)
        assert message.startswith(f"transformation 't': cpu={text!r} ") and "e.g. '200m', '1', '1.5'" in message
        assert not GRAMMAR.fullmatch(text) or kubernetes_value(text) <= 0
    else:
        assert GRAMMAR.fullmatch(text), f"{text!r} accepted but Kubernetes rejects it"
        assert value == pytest.approx(kubernetes_value(text), rel=Decimal("1e-20"))


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.none(), st.booleans(), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(), st.text(), max_size=1)))
def test_values_of_other_types_get_the_clear_error(value):
    with pytest.raises(TaskResourcesError, match=r"memory=.* is not a Kubernetes quantity; use a string like '250Mi'"):
        parse_quantity(value, field_name="memory")
