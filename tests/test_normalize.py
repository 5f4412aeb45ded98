import pytest

from ctrldial.data.normalize import normalize_text

CASES = [
    ("Hello , how are you ?", "Hello, how are you?"),
    ("I ’ m fine , thanks .", "I'm fine, thanks."),
    ("Don ’ t worry , it ’ s fine !", "Don't worry, it's fine!"),
    ("We ’ ve got it , they ’ re here and you ’ ll see .", "We've got it, they're here and you'll see."),
    ("I ’ d love to .", "I'd love to."),
    ("I do n't know .", "I don't know."),
    ("You 're right .", "You're right."),
    ("It costs $ 25 .", "It costs $25."),
    ("The price is 1 , 200 yuan .", "The price is 1,200 yuan."),
    ("It grew 15 % last year .", "It grew 15% last year."),
    ("Well . . . I suppose so .", "Well... I suppose so."),
    ("Call me ( if you can ) .", "Call me (if you can)."),
    ('He said " no way " .', 'He said "no way".'),
    ("What ’ s that ?It ’ s a gift .", "What's that? It's a gift."),
    ("Mr . Smith is here : room 3 .", "Mr. Smith is here: room 3."),
    ("Already natural, isn't it?", "Already natural, isn't it?"),
]


@pytest.mark.parametrize("raw,expected", CASES)
def test_normalize(raw, expected):
    assert normalize_text(raw) == expected


@pytest.mark.parametrize("raw,expected", CASES)
def test_idempotent(raw, expected):
    assert normalize_text(normalize_text(raw)) == normalize_text(raw)
