"""The notification state machine's pure rules: transitions, the circuit rule, the gates
and the watchdog's copy rule (plain values in, plain values out)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from workers.state.notification import (
    INITIAL,
    QUEUE_GRACE_S,
    TERMINAL,
    TRANSITIONS,
    State,
    Verdict,
    allowed,
    circuit_buries,
    circuit_gate,
    rate_gate,
    slot_gate,
    watchdog_copy_bound,
)

times = st.floats(min_value=0, max_value=1e10, allow_nan=False)
maybe_times = st.none() | times


def test_terminal_states_have_no_way_out() -> None:
    for state in TERMINAL:
        assert TRANSITIONS[state] == frozenset()
    assert not INITIAL & TERMINAL


def test_every_state_can_reach_a_terminal_state() -> None:
    for start in State:
        seen, todo = {start}, [start]
        while todo:
            for nxt in TRANSITIONS[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert seen & TERMINAL, start


def test_parked_leaves_only_for_the_queue_or_a_dead_letter() -> None:
    assert TRANSITIONS[State.PARKED] == {State.QUEUED, State.DEAD}
    assert not allowed(State.PARKED, State.DELIVERED)
    assert allowed(State.HELD, State.QUEUED) and not allowed(State.HELD, State.IN_FLIGHT)


@given(now=times, deadline=times, since=maybe_times, failed=maybe_times)
def test_the_circuit_buries_only_past_the_deadline_after_a_probe_made_since_it_waited(
        now: float, deadline: float, since: float | None, failed: float | None) -> None:
    buries = circuit_buries(now_s=now, deadline_s=deadline, waiting_since_s=since,
                            probe_failed_at_s=failed)
    if buries:
        assert now >= deadline
        assert since is not None and failed is not None and since < failed
    elif now >= deadline and since is not None and failed is not None:
        assert failed <= since  # the only probe that failed was made before it waited


def test_a_recovered_receiver_loses_nothing_to_the_circuit() -> None:
    # past its span, but no probe failed since it began waiting: it stays parked
    assert not circuit_buries(now_s=100, deadline_s=50, waiting_since_s=10,
                              probe_failed_at_s=None)
    assert not circuit_buries(now_s=100, deadline_s=50, waiting_since_s=10,
                              probe_failed_at_s=9.5)
    assert circuit_buries(now_s=100, deadline_s=50, waiting_since_s=10, probe_failed_at_s=20)


@given(ordered=st.booleans(), now=times, deadline=times, since=maybe_times,
       failed=maybe_times, wait=st.floats(0, 1e4), reset=st.floats(0, 1e4))
def test_the_circuit_gate_parks_unordered_and_waits_ordered_unless_the_rule_buries(
        ordered: bool, now: float, deadline: float, since: float | None,
        failed: float | None, wait: float, reset: float) -> None:
    decision = circuit_gate(open_=True, ordered=ordered, now_s=now, deadline_s=deadline,
                            waiting_since_s=since, probe_failed_at_s=failed, wait_s=wait,
                            reset_s=reset, why_dead="circuit open: probe failed")
    if circuit_buries(now_s=now, deadline_s=deadline, waiting_since_s=since,
                      probe_failed_at_s=failed):
        assert decision.verdict is Verdict.DEAD and decision.why.startswith("circuit open")
    elif ordered:
        assert decision.verdict is Verdict.WAIT and 0 <= decision.wait_s <= max(1.0, reset)
    else:
        assert decision.verdict is Verdict.PARK
    closed = circuit_gate(open_=False, ordered=ordered, now_s=now, deadline_s=deadline,
                          waiting_since_s=since, probe_failed_at_s=failed, wait_s=wait,
                          reset_s=reset, why_dead="x")
    assert closed.goes


@given(st.floats(-10, 10, allow_nan=False))
def test_the_rate_gate_waits_exactly_until_the_next_token(wait: float) -> None:
    decision = rate_gate(wait)
    assert decision.goes == (wait <= 0)
    if not decision.goes:
        assert decision.wait_s == wait and decision.why == "rate limit"


def test_the_slot_gate_looks_again_shortly_without_a_slot() -> None:
    assert slot_gate(True, retry_s=0.2).goes
    waiting = slot_gate(False, retry_s=0.2)
    assert waiting.verdict is Verdict.WAIT and waiting.wait_s == 0.2


#: Whole seconds, so that the sums below are exact in floating point.
seconds = st.integers(min_value=0, max_value=10**10).map(float)


@given(st.lists(seconds, max_size=20), seconds, st.none() | seconds,
       st.integers(10, 3600).map(float))
def test_the_watchdog_copies_only_due_entries_the_queue_has_moved_past(
        armed: list[float], now: float, tail: float | None, watchdog_s: float) -> None:
    bound = watchdog_copy_bound(now, tail, watchdog_s)
    for armed_at in armed:
        copied = armed_at + watchdog_s <= bound  # an entry's score: armed + watchdog_s
        # never before it is due; with an empty queue every due one was lost; else only
        # one the queue has moved past: its oldest message came QUEUE_GRACE_S after it
        assert copied == (armed_at + watchdog_s <= now
                          and (tail is None or tail - QUEUE_GRACE_S >= armed_at))
