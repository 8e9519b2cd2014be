"""gc_pause: the collector is off inside, back as it was after, across nesting and threads."""
import gc
import threading

import pytest

from syncd import gc_pause


@pytest.fixture(autouse=True)
def collector_restored():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_off_inside_and_back_on_after_even_on_error():
    gc.enable()
    with pytest.raises(RuntimeError):
        with gc_pause.paused():
            assert not gc.isenabled()
            raise RuntimeError("boom")
    assert gc.isenabled()


def test_stays_off_if_it_was_off():
    gc.disable()
    with gc_pause.paused():
        pass
    assert not gc.isenabled()


def test_overlapping_pauses_from_threads_end_with_the_last():
    gc.enable()
    first_in, second_in, first_may_leave = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with gc_pause.paused():
            first_in.set()
            first_may_leave.wait(5)
        seen["after_first"] = gc.isenabled()

    t = threading.Thread(target=first)
    t.start()
    first_in.wait(5)
    with gc_pause.paused():
        second_in.set()
        first_may_leave.set()
        t.join(5)
        seen["inside_second"] = gc.isenabled()
    assert seen == {"after_first": False, "inside_second": False}
    assert gc.isenabled()
