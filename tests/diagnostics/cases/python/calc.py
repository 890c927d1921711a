import os


def add(a: int, b: int) -> int:
    return a - b


def greet(name: str) -> str:
    unused = 1
    return 42
