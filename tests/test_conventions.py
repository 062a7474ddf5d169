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


def test_score_is_bonafide_logit_minus_spoof_logit():
    import numpy as np

    logits = np.array([[0.5, 2.0], [3.0, -1.0]])
    assert np.allclose(c.score_from_logits(logits), [1.5, -4.0])
