"""Argument types shared by every app's management commands."""

import argparse
import math
from collections.abc import Callable


def number_type(kind: type[int] | type[float], minimum: float, maximum: float = math.inf) -> Callable[[str], float]:
    """An argparse type for a count or a fraction, so a value out of range is a usage error, not a traceback."""

    def number(value: str) -> float:
        try:
            parsed = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a{' whole' if kind is int else ''} number") from None
        if not minimum <= parsed <= maximum:  # nan is refused here too
            bounds = f"from {minimum} to {maximum}" if maximum < math.inf else f"{minimum} or more"
            raise argparse.ArgumentTypeError(f"must be {bounds}, not {value}")
        return parsed

    return number
