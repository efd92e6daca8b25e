"""Bad input is refused at once, with an error naming the parameter, and leaves the
pool whole: values that used to be accepted and then failed every checkout."""

from __future__ import annotations

import pytest

from tests.conftest import SECRET

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("word", ["OFF", "none", "None", " off "])
def test_check_off_in_any_case_turns_the_check_off(make_pool, db, word):
    pool = make_pool(max_size=1, check=word, check_interval=0)
    with pool.item(timeout=5):
        pass
    with pool.item(timeout=5):
        pass  # no statement run as a check, and the same connection reused
    assert db.connects == 1 and pool.stats().opened == 1


def test_check_ping_in_any_case_is_the_drivers_ping(make_pool, db):
    pool = make_pool(max_size=1, check="PING", check_interval=0)
    for _ in range(2):
        with pool.item(timeout=5):
            pass
    assert db.connects == 1


@pytest.mark.parametrize("word", ["pong", "Enabled", "on"])
def test_check_as_a_single_unknown_word_is_refused(make_pool, word):
    with pytest.raises(ValueError, match="^check must be"):
        make_pool(check=word)


def test_check_of_a_wrong_type_names_its_type_not_its_value(make_pool):
    with pytest.raises(TypeError, match="^check must be .* got a dict$"):
        make_pool(check={"password": SECRET})


def test_max_size_zero_is_refused_for_a_connection_pool(make_pool):
    with pytest.raises(ValueError, match="^max_size must be >= 1"):
        make_pool(0, 0)


def test_connect_timeout_zero_is_refused(make_pool):
    with pytest.raises(ValueError, match="^connect_timeout must be > 0 seconds, or None"):
        make_pool(connect_timeout=0)


def test_put_with_a_cleanup_that_is_not_callable_names_it_and_keeps_the_pool_whole(make_pool):
    pool = make_pool(max_size=1)
    conn = pool.get(timeout=5)
    with pytest.raises(TypeError, match="^cleanup must be callable or None, got a str$"):
        pool.put(conn, cleanup="x")
    assert conn  # still checked out, and still the caller's to return
    pool.put(conn)
    stats = pool.stats()
    assert (stats.size, stats.idle, stats.in_use) == (1, 1, 0)
    with pool.item(timeout=5):
        pass


def test_a_dsn_in_the_wrong_positional_slot_is_not_echoed(make_pool):
    dsn = f"host=db1 password={SECRET}"
    with pytest.raises(TypeError) as info:
        make_pool(dsn)
    assert "min_size" in str(info.value) and SECRET not in str(info.value)


@pytest.mark.parametrize("timeout", [-1, float("nan"), "1"])
def test_a_bad_get_timeout_is_refused_even_when_a_connection_is_idle(make_pool, timeout):
    pool = make_pool(max_size=1)
    with pool.item(timeout=5):
        pass
    with pytest.raises((TypeError, ValueError), match="^timeout must be"):
        pool.get(timeout=timeout)
    assert pool.stats().idle == 1


def test_reconnect_backoff_of_infinities_or_bools_is_refused(make_pool):
    for value in ((float("inf"), float("inf")), (True, True)):
        with pytest.raises(ValueError, match="^reconnect_backoff must be"):
            make_pool(reconnect_backoff=value)
