"""gateway/guardrails/pii.py: the detectors against a labelled corpus, the validators, placeholders."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from gateway.config.schema import BUILTIN_CATEGORIES
from gateway.guardrails.pii import Finding, PiiScanner
from tests.support import paths

CORPUS = paths.FIXTURES / "pii"
# Every category must find at least this share of what it reports correctly (precision) and of
# what is there (recall), over the whole corpus: positives of every file, and negatives, which
# hold no personal data of any category. The corpus keeps a few realistic misses (marked in the
# files) so the recall bar is below 1.
MIN_PRECISION = 0.95
MIN_RECALL = 0.90
MIN_CASES = 10  # positives and negatives per category, so one case moves a rate by <= 10%


def load_corpus() -> dict[str, dict[str, Any]]:
    return {path.stem.upper(): yaml.safe_load(path.read_text()) for path in sorted(CORPUS.glob("*.yaml"))}


def test_the_corpus_covers_every_built_in_category_with_enough_cases() -> None:
    corpus = load_corpus()
    assert set(corpus) == set(BUILTIN_CATEGORIES)
    for category, cases in corpus.items():
        assert len(cases["positives"]) >= MIN_CASES, category
        assert len(cases["negatives"]) >= MIN_CASES, category


def score_corpus(scanner: PiiScanner) -> dict[str, tuple[int, int, int]]:
    """(true positives, false positives, false negatives) per category."""
    counts = {category: [0, 0, 0] for category in BUILTIN_CATEGORIES}
    for category, cases in load_corpus().items():
        labelled = [
            (case["text"], {(category, value) for value in case["values"]}) for case in cases["positives"]
        ]
        labelled += [(text, set()) for text in cases["negatives"]]
        for text, expected in labelled:
            found = {(f.category, f.value) for f in scanner.find(text)}
            for hit in found & expected:
                counts[hit[0]][0] += 1
            for wrong in found - expected:
                counts[wrong[0]][1] += 1
            for missed in expected - found:
                counts[missed[0]][2] += 1
    return {category: (tp, fp, fn) for category, (tp, fp, fn) in counts.items()}


@pytest.mark.parametrize("category", BUILTIN_CATEGORIES)
def test_precision_and_recall_on_the_labelled_corpus(category: str) -> None:
    tp, fp, fn = score_corpus(PiiScanner())[category]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    assert precision >= MIN_PRECISION, f"{category}: precision {precision:.3f} ({fp} false positives)"
    assert recall >= MIN_RECALL, f"{category}: recall {recall:.3f} ({fn} missed)"


def test_the_scorer_can_fail() -> None:
    # A scanner without PHONE misses all the phone positives: the recall check would catch it.
    tp, _, fn = score_corpus(PiiScanner([c for c in BUILTIN_CATEGORIES if c != "PHONE"]))["PHONE"]
    assert tp == 0 and fn >= MIN_CASES


def test_overlaps_go_to_the_more_specific_detector() -> None:
    scanner = PiiScanner(custom={"EMPLOYEE_ID": r"EMP-\d{6}"})
    text = "EMP-123456 paid from CH93 0076 2011 6238 5295 7 by card 4111-1111-1111-1111."
    assert [(f.category, f.value) for f in scanner.find(text)] == [
        ("EMPLOYEE_ID", "EMP-123456"),
        ("IBAN", "CH93 0076 2011 6238 5295 7"),
        ("CARD", "4111-1111-1111-1111"),
    ]


def test_a_failed_checksum_inside_an_iban_shape_is_not_a_phone_number() -> None:
    assert PiiScanner().find("IBAN CH94 0076 2011 6238 5295 7") == []
    # ...but a phone number next to text is still one.
    assert [f.value for f in PiiScanner().find("de12 call 044 668 18 00")] == ["044 668 18 00"]


def test_categories_can_be_chosen_and_unknown_ones_are_refused() -> None:
    scanner = PiiScanner(["email"])
    assert [f.category for f in scanner.find("a@example.com +41 44 668 18 00 192.168.0.1")] == ["EMAIL"]
    assert scanner.categories == ("EMAIL",)
    with pytest.raises(ValueError, match="unknown PII category"):
        PiiScanner(["passport"])


def test_findings_report_positions() -> None:
    text = "x 8.8.8.8 y"
    assert PiiScanner().find(text) == [Finding("IP", 2, 9, "8.8.8.8")]
