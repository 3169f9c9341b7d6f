"""Waiting in tests: poll a condition until it holds or a bound passes."""

import time


def wait_for(pred, timeout, what, interval=0.02):
    """pred()'s first true value; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)
