"""The case folders hold sources with deliberate problems: they are not tests."""

collect_ignore = ["cases"]
