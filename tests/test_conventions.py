import pytest

from rawguard import conventions as c


def test_label_ids_follow_asvspoof():
    assert c.BONAFIDE == 1 and c.SPOOF == 0
    assert c.parse_label("bonafide") == c.BONAFIDE
    assert c.parse_label("bona-fide") == c.BONAFIDE
    assert c.parse_label(" Spoof ") == c.SPOOF
    assert c.parse_label("fake") == c.SPOOF
    assert c.label_name(1) == "bonafide"


def test_unknown_label_names_the_value():
    with pytest.raises(ValueError, match="'maybe'"):
        c.parse_label("maybe")
