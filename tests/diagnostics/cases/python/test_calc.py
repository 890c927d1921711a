from calc import add


def test_add():
    assert add(1, 2) == 3


def test_ok():
    assert add(0, 0) == 0


def test_raises():
    raise ValueError("boom")
