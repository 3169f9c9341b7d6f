"""Small helpers shared by the whole project."""

import time

import tenacity


def _sleep(seconds):
    """The one sleep every retry goes through; tests patch it."""
    time.sleep(seconds)


def retry(exceptions, attempts=10, interval=0.1, backoff=2.0, max_interval=2.0,
          timeout=None, log=None):
    """A decorator that retries on ``exceptions`` with exponential back-off.

    Stops after ``attempts`` tries or, if ``timeout`` is set, once that many
    seconds have passed, and re-raises the last exception.  Sleeps through
    :func:`_sleep` so a test can patch ``spdk_backend.utils._sleep``.
    """
    stop = tenacity.stop_after_attempt(attempts)
    if timeout is not None:
        stop = stop | tenacity.stop_after_delay(timeout)
    kwargs = {}
    if log is not None:
        kwargs["before_sleep"] = lambda state: log.debug(
            "retrying %s after %s (attempt %d)",
            getattr(state.fn, "__name__", state.fn), state.outcome.exception(),
            state.attempt_number)
    return tenacity.retry(
        retry=tenacity.retry_if_exception_type(exceptions),
        stop=stop,
        wait=tenacity.wait_exponential(multiplier=interval, exp_base=backoff,
                                       max=max_interval),
        sleep=lambda seconds: _sleep(seconds),
        reraise=True,
        **kwargs)
