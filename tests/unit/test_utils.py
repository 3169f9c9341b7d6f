from unittest import mock

import pytest

from spdk_backend import utils


def test_retry_until_success_with_backoff():
    calls = []

    @utils.retry(ValueError, attempts=5, interval=0.1, backoff=2, max_interval=0.3)
    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise ValueError("not yet")
        return "done"

    with mock.patch("spdk_backend.utils._sleep") as sleep:
        assert flaky() == "done"
    assert [c.args[0] for c in sleep.call_args_list] == [0.1, 0.2, 0.3]


def test_retry_reraises_last_and_ignores_other_errors():
    with mock.patch("spdk_backend.utils._sleep") as sleep:
        @utils.retry(ValueError, attempts=3)
        def always():
            raise ValueError("nope")

        with pytest.raises(ValueError):
            always()
        assert sleep.call_count == 2

        @utils.retry(ValueError, attempts=3)
        def other():
            raise KeyError("k")

        with pytest.raises(KeyError):
            other()
        assert sleep.call_count == 2
