"""The shell's census: a process whose beats stop is called silent after 1.5 of its periods, only when the
bus is seen to carry beats; back when it beats again; gone after three."""

from __future__ import annotations

from shell.census import Census


def census_of(**periods: float) -> Census:
    census = Census("shell", timeout=1.0)
    for name, period in {"shell": 5.0, **periods}.items():
        census.beat(name, 100 + len(census.nodes), period, name, 0.0)
    return census


def test_a_process_is_silent_after_one_and_a_half_of_its_periods_and_back_when_it_beats():
    census = census_of(ledd=5.0, camerad=5.0)
    census.beat("camerad", 102, 5.0, "camerad", 5.0)
    census.beat("shell", 100, 5.0, "shell", 5.0)
    silenced, gone, deadline, roll_call = census.check(7.0)
    assert (silenced, gone, roll_call) == ([], [], None) and deadline == 7.5  # ledd: 1.5 x 5 s after 0
    census.beat("camerad", 102, 5.0, "camerad", 7.4)  # heard after ledd's beat was due: the bus works
    silenced, gone, _, roll_call = census.check(7.6)
    assert silenced == ["ledd"] and not gone and roll_call is None
    assert census.silent() == {"ledd": {"pid": 101, "since": census.silent()["ledd"]["since"]}}
    assert "ledd" in census.nodes, "listed still: what is kept for it is not dropped for a hang"
    assert census.check(8.0)[0] == [], "said once"
    assert census.beat("ledd", 101, 5.0, "ledd", 9.0) == "back" and census.silent() == {}
    assert census.beat("ledd", 101, 5.0, "ledd", 10.0) == "same"


def test_silence_past_three_periods_is_gone_and_a_new_pid_is_a_restart():
    census = census_of(ledd=5.0)
    assert census.beat("ledd", 999, 5.0, "ledd", 1.0) == "new"
    census.beat("shell", 100, 5.0, "shell", 10.0)
    census.check(10.0)
    assert census.silent() and "ledd" in census.nodes
    census.beat("shell", 100, 5.0, "shell", 15.0)
    silenced, gone, _, _ = census.check(16.5)
    assert gone == [("ledd", 15.5)] and "ledd" not in census.nodes and census.silent() == {}


def test_while_no_beat_comes_through_nobody_is_blamed_and_the_roll_is_called_once():
    census = census_of(ledd=5.0, powerd=5.0)  # a hung broker: nothing comes in, the shell's own beat neither
    silenced, gone, _, roll_call = census.check(8.0)
    assert silenced == [] and census.unproven and "silent for 8.0 s" in roll_call
    assert census.check(8.5)[3] is None, "one roll call, not one per look"
    census.beat("shell", 100, 5.0, "shell", 9.0)  # the shell's own answer came back; powerd's too
    census.beat("powerd", 102, 5.0, "powerd", 9.0)
    silenced, _, _, _ = census.check(9.0)
    assert silenced == ["ledd"] and not census.unproven


def test_a_fast_beat_is_not_silent_before_the_policys_timeout():
    census = census_of(app=0.3)  # a developer-key app while it holds focus
    census.beat("shell", 100, 5.0, "shell", 0.9)
    assert census.check(0.9)[0] == []  # 3 of its periods missed, but under the 1 s timeout
    assert census.check(1.1)[0] == ["app"]
