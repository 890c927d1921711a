import unittest

from calc import add


class CalcTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(2, 2), 4)

    def test_error(self):
        {}["missing"]


if __name__ == "__main__":
    unittest.main()
