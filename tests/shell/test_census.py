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
    census.beat("shell", 100, 5.0, "shell", 5.0)  # the shell's own beats, each period: the bus is up
    census.beat("shell", 100, 5.0, "shell", 10.0)
    census.check(10.0)
    assert census.silent() and "ledd" in census.nodes
    census.beat("shell", 100, 5.0, "shell", 15.0)
    silenced, gone, _, _ = census.check(16.5)
    assert gone == [("ledd", 15.5)] and "ledd" not in census.nodes and census.silent() == {}


def test_while_no_beat_comes_through_nobody_is_blamed_and_the_roll_is_called_once():
    # A hung broker: nothing comes in, the shell's own beat neither (shorter than an outage, OUTAGE_BEATS of
    # the shell's 5 s periods: the next test)
    census = census_of(ledd=2.0, powerd=2.0)
    silenced, gone, _, roll_call = census.check(4.0)
    assert silenced == [] and census.unproven and "silent for 4.0 s" in roll_call
    assert census.check(4.5)[3] is None, "one roll call, not one per look"
    census.beat("shell", 100, 5.0, "shell", 5.0)  # the shell's own answer came back; powerd's too
    census.beat("powerd", 102, 2.0, "powerd", 5.0)
    silenced, _, _, _ = census.check(5.0)
    assert silenced == ["ledd"] and not census.unproven


def test_a_fast_beat_is_not_silent_before_the_policys_timeout():
    census = census_of(app=0.3)  # a developer-key app while it holds focus
    census.beat("shell", 100, 5.0, "shell", 0.9)
    assert census.check(0.9)[0] == []  # 3 of its periods missed, but under the 1 s timeout
    assert census.check(1.1)[0] == ["app"]


def test_an_outage_of_the_whole_bus_is_nobodys_silence_when_beats_come_again():
    """A broker hung for 20 s (no beat of anyone, the shell's own neither), then back: ledd's next beat is on
    its way, and it is neither gone nor silent for the while the bus was out."""
    census = census_of(ledd=5.0)
    census.beat("ledd", 101, 5.0, "ledd", 4.0)
    census.beat("shell", 100, 5.0, "shell", 5.0)
    census.beat("shell", 100, 5.0, "shell", 25.0)  # the first beat after the outage: the shell's own
    silenced, gone, deadline, _ = census.check(25.1)
    assert (silenced, gone) == ([], []) and "ledd" in census.nodes
    # its beat due a period and a half after its last, the outage past the shell's period left out
    assert deadline == 4.0 + (20.0 - 5.0) + 1.5 * 5.0
    assert census.check(26.6)[0] == ["ledd"], "and silent when it still does not beat once the bus is back"


def test_a_process_is_gone_only_once_someone_elses_beat_came_after_its_own_was_due():
    census = census_of(ledd=5.0)
    census.beat("shell", 100, 5.0, "shell", 1.0)
    silenced, gone, _, _ = census.check(16.0)  # 16 s with no beat of anyone since the shell's at 1 s
    assert gone == [] and "ledd" in census.nodes and census.unproven
    census.beat("shell", 100, 5.0, "shell", 6.0)  # a beat that came in late: the bus carried beats again
    assert census.check(16.1)[1] == [("ledd", 16.1)]
