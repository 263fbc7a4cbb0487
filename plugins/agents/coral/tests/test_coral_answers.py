"""Answer extraction on the kind of replies small models write, and answer comparison."""
import pytest

from matrix_plugin_coral import extract_answer, normalize, same_answer
from matrix_plugin_coral.answers import states_agreement

ABCD = ["40", "42", "44", "46"]
NAMES = ["Ann", "Ben", "Cal", "It cannot be determined"]
TEN = [str(n) for n in range(10, 20)]  # A-J, MMLU-Pro style
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


@pytest.mark.parametrize(
    "text, options, expected",
    [
        # explicit formats
        ("Answer: B", ABCD, "B"),
        ("answer: b", ABCD, "B"),
        ("The answer is (C).", ABCD, "C"),
        ("**Answer:** D", ABCD, "D"),
        ("Answer: **(C) 44**.", ABCD, "C"),
        ("The final answer is $\\boxed{B}$.", ABCD, "B"),
        ("\\boxed{\\text{A}}", ABCD, "A"),
        ("The correct option would be D", ABCD, "D"),
        ("Answer:\n\nB", ABCD, "B"),
        ("My answer remains (a).", ABCD, "A"),
        ("Option C is correct.", ABCD, "C"),
        ("I choose (B) because 42 is right.", ABCD, "B"),
        ("The answer to this question is B) 42", ABCD, "B"),
        ("I think the answer is I", TEN, "I"),
        ("The answer is J.", TEN, "J"),
        # the option's text instead of its letter
        ("so the answer is 42", ABCD, "B"),
        ("The answer is: Ben", NAMES, "B"),
        ("The answer is cannot be determined.", NAMES, "D"),
        ("Answer: Wednesday", DAYS, "C"),
        ("The answer is Ben, because Ann is taller than him.", NAMES, "B"),
        # later statements win; negations and reasons do not confuse
        ("Bob said the answer is A, but I think the answer is C.", ABCD, "C"),
        ("The answer is not B, but D.", ABCD, "D"),
        ("The answer is B because 40 + 2 = 42.", ABCD, "B"),
        ("The answer is I think B", ABCD, "B"),
        # no format: the conclusion at the end
        ("Let's compute: 17 + 25 = 42.\nSo it must be C", ABCD, "C"),
        ("Ben is the shortest.", NAMES, "B"),
        ("17 + 25 = 42", ABCD, "B"),
        ("**B**", ABCD, "B"),
        ("After checking Alice's steps I agree with her.\n(B)", ABCD, "B"),
        ("A. Both yes and no", ["Both yes and no", "Yes", "No", "Maybe"], "A"),  # leads with the option
        ("B is true.", ABCD, "B"),
        ("A. Ana is older than Hana, but it cannot be known.", NAMES, "A"),
        # nothing stated
        ("", ABCD, None),
        ("I agree with Alice.", ABCD, None),
        ("The answer is a prime number", ABCD, None),
        ("The answer is not the one you stated.", ABCD, None),
        ("Answer: X", ABCD, None),
        ("Answer: E", ABCD, None),  # only A-D exist
        ("Then write the last line as: Answer: <option letter>", ABCD, None),
        ("A. 40\nB. 42\nC. 44\nD. 46", ABCD, None),  # it only listed the options
        ("Options: A. 40\nC. 44", ABCD, None),
        ("A is not correct.", ABCD, None),
        ("A and B are both wrong here", ABCD, None),
    ],
)
def test_multiple_choice(text, options, expected):
    assert extract_answer(text, options) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is 42.", "42"),
        ("\\boxed{42}", "42"),
        ("\\boxed{\\frac{3}{4}}", "0.75"),
        ("Answer: $1,234.50", "1234.5"),
        ("The answer is -3", "-3"),
        ("The answer is twelve.", "12"),
        ("answer: 25%", "25"),
        ("Answer = 7", "7"),
        ("**Answer:** 19 apples.", "19"),
        ("12 + 7 = 19. So Tom has 19 apples now.", "19"),
        ("Your answer is correct. The total is 19.", "19"),
        ("**Step 1:** add 3 and 4.\nThe total is 7.", "7"),
        ("The answer is not 12 but 13.", "13"),
        ("The answer is not 12, it is 13.", "13"),
        ("Fay is 18. 2 * 18 = 36.\nThe answer is not the one you've stated.", "36"),
        ("The answer is one of the numbers above, 36.", "36"),
        ("The answer is Paris.", "paris"),  # free-form text answers are kept
        ("Then write the last line as: Answer: <number>", None),
        ("I'm not sure.", None),
        ("", None),
    ],
)
def test_free_form(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "a, b, same",
    [
        ("B", "b", True),
        ("19", "19.0", True),
        ("1,000", "1000", True),
        ("0.75", "3/4", True),
        ("nineteen", "19", True),
        ("Paris", "paris.", True),
        ("B", "C", False),
        ("19", "18", False),
        (None, None, False),  # an unreadable answer agrees with nothing
        ("B", None, False),
    ],
)
def test_same_answer(a, b, same):
    assert same_answer(a, b) is same


def test_normalize():
    assert normalize("b", ABCD) == "B" and normalize("(c)", ABCD) == "C"
    assert normalize(" 42.0 ") == "42" and normalize(19) == "19" and normalize(2.5) == "2.5"
    assert normalize("E", ABCD) == "e"  # not an option letter: plain text
    assert normalize("") is None and normalize(None) is None


@pytest.mark.parametrize(
    "text, agrees",
    [
        ("Bob is right.", True),
        ("I agree with Alice.", True),
        ("You're correct, well done.", True),
        ("That is right.", True),
        ("I disagree with Bob.", False),
        ("Bob is not right.", False),
        ("I agree that you tried, but it is wrong.", False),
        ("Let me check the numbers again.", False),
        ("", False),
    ],
)
def test_agreement_statements(text, agrees):
    assert states_agreement(text) is agrees
