"""The combined-fault harness: seeded random mixes of faults, checked from the receiver.

    python -m tests.chaos --quick                 # the CI run: 2 seeds, short timings
    python -m tests.chaos --seed 7                # one seed (repeat a failing run)
    python -m tests.chaos --seeds 20 --long       # the long run: default circuit timings
    python -m tests.chaos --seeds 5 --keep        # keep worker logs and Redis data

Each seed starts its own ``redis-server`` (AOF on, so it can be restarted), 3
``recnotify worker`` processes and two HTTP receivers (one fast, one slow), and
publishes recordings of 6 lifecycle events to 6 destinations while it injects a
schedule drawn from ``random.Random(seed)``:

- ``ord`` (ordered) and ``unord``: the receiver answers 503 to the first attempt of
  every RECORDING_STARTED_EVENT and of some SEGMENT_STARTED_EVENTs (keyed by
  ``webhook-id``), 200 to every later one -- this opens their circuits;
- ``burst``: short 503 bursts (every request refused for 1.5-3 s) that open its
  circuit; ordered or not by the seed;
- ``outage``: refused for longer than its circuit's ``reset_s``, then recovers;
  ordered or not by the seed;
- ``slow``: a receiver that takes 0.4 s per request (a SIGKILL lands mid-attempt);
- ``gone``: answers ``410`` from a random moment on (the destination is disabled);
- 1-2 worker SIGKILLs and one Redis restart, at random moments while publishing.

Every destination has ``retry: {max_attempts: 10, backoff_s: 0.2, backoff_max_s: 1}``.

Checked from the receivers' side, per notification (event x destination):

- ``lost``: neither delivered (a 2xx at its receiver) nor a dead letter when the run
  settles (a ``gone`` notification published after the first 410 is exempt: its
  destination was disabled);
- ``wrongly_dead``: a dead letter although its receiver did not refuse it for its
  span: dead is right only after a ``410``, or when a refusal window (a burst, the
  outage) overlapped its life and ended less than one probe period (``reset_s`` + 5 s
  for the sweep and the probe's own request) before its deadline (publish + the retry
  policy's span), or on ``gone`` once it has answered 410 (the destination is disabled).
  A 503 to a first attempt is not a refusal of the notification: the receiver accepts
  its next try;
- ``order_violations``: recordings of an ordered destination whose first 2xx
  arrivals are not in publish order with ``X-Recnotify-Sequence`` 1..n (complete
  unless one of its notifications was rightly dead);
- ``max_lateness_s``: for each fault, the longest time from the fault to the next
  request at the receiver of a notification pending at the fault (for ordered
  destinations: the head of each recording), over destinations that were not refusing
  around the fault; more than 120 s (SPEC 6) is a violation;
- ``dup_other_id``: requests whose ``webhook-id`` is not the notification's own id.

One line per seed (``seed=S ...``), then the figure, the last line printed:

    seeds=N notifications=N lost=0 wrongly_dead=0 order_violations=0 max_lateness_s=X dup_other_id=0

Exit code 1 on any violation. ``--quick`` uses short worker timings
(``RECNOTIFY_WATCHDOG_S=10``, ``RECNOTIFY_CLAIM_IDLE_S=3``) and a short
circuit (``reset_s: 3``); ``--long`` keeps the workers' default timings and the default
circuit (``failures: 5, reset_s: 30``) and publishes more recordings per seed.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from urllib.parse import parse_qs, urlsplit

from producer import Publisher
from producer.errors import PublishError
from tests.helpers import WorkerFactory
from tests.receiver import Received, Receiver
from workers.destinations.backoff import RetryPolicy, max_span_s
from workers.http.request import notification_id
from workers.ops.embedded import EmbeddedRedis

PREFIX = "chaos:"
LIFECYCLE = ["RECORDING_STARTED_EVENT", "SEGMENT_STARTED_EVENT", "RECORDING_PAUSED_EVENT",
             "RECORDING_RESUMED_EVENT", "SEGMENT_ENDED_EVENT", "RECORDING_ENDED_EVENT"]
RETRY = {"max_attempts": 10, "backoff_s": 0.2, "backoff_max_s": 1}
SPAN_S = max_span_s(RetryPolicy(**RETRY))  # type: ignore[arg-type]
BOUND_S = 120.0  # SPEC 6: at most 2 minutes from a fault to the next attempt
PROBE_SLACK_S = 5.0  # the sweep period and the probe's own request, on top of reset_s
QUICK_ENV = {"RECNOTIFY_CLAIM_IDLE_S": "3", "RECNOTIFY_WATCHDOG_S": "10",
             "RECNOTIFY_MAX_COUNTDOWN_S": "2", "RECNOTIFY_LOG_LEVEL": "WARNING"}
DEFAULT_ENV = {"RECNOTIFY_LOG_LEVEL": "WARNING", "RECNOTIFY_CLAIM_IDLE_S": "60",
               "RECNOTIFY_WATCHDOG_S": "60", "RECNOTIFY_MAX_COUNTDOWN_S": "30"}


@dataclass(frozen=True)
class Mode:
    name: str
    recordings: int
    rate_per_s: float  # events published per second
    circuit: dict[str, float]
    worker_env: dict[str, str]
    settle_s: float  # how long to wait for the last notifications after publishing


QUICK = Mode("quick", recordings=25, rate_per_s=12, circuit={"failures": 3, "reset_s": 3},
             worker_env=QUICK_ENV, settle_s=100)
LONG = Mode("long", recordings=60, rate_per_s=8, circuit={"failures": 5, "reset_s": 30},
            worker_env=DEFAULT_ENV, settle_s=300)


@dataclass
class Policy:
    """How one destination's receiver answers, by the wall clock (``request.at``)."""

    down: list[tuple[float, float]] = field(default_factory=list)  # 503 windows [a, b)
    gone_at: float | None = None  # 410 from then on
    fail_first: set[str] = field(default_factory=set)  # event types: 503 on 1st attempt
    fail_first_ucids: set[str] = field(default_factory=set)  # ... for SEGMENT_STARTED

    def status(self, at: float, first: bool, kind: str, ucid: str) -> int:
        if self.gone_at is not None and at >= self.gone_at:
            return 410
        if any(a <= at < b for a, b in self.down):
            return 503
        if first and (kind in self.fail_first
                      or (kind == "SEGMENT_STARTED_EVENT" and ucid in self.fail_first_ucids)):
            return 503
        return 200

    def refused_until(self, at: float, deadline: float) -> float:
        """The end of the last refusal window that overlaps a notification's life
        [``at``, ``deadline``] (0: its receiver never refused it by the clock -- a 503 to
        a first attempt is not a refusal of the notification)."""
        return max((b for a, b in self.down if a <= deadline and b >= at - 1.0), default=0.0)


class ChaosReceiver(Receiver):
    """A receiver whose answers follow a :class:`Policy` per path (``/<destination>``)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__(delay_s=delay_s)
        self.policies: dict[str, Policy] = {}

    def _record(self, request: Received) -> tuple[int, dict[str, str]]:
        query = parse_qs(urlsplit(request.target).query)
        kind, ucid = query.get("k", [""])[0], query.get("u", [""])[0]
        policy = self.policies.get(request.path.strip("/"), Policy())
        with self.cond:
            webhook_id = request.header("webhook-id") or ""
            first = webhook_id not in self._seen_ids
            self._seen_ids.add(webhook_id)
            request.status = policy.status(request.at, first, kind, ucid)
            self.requests.append(request)
            self.cond.notify_all()
        return request.status, {}


@dataclass
class Dest:
    name: str
    receiver: ChaosReceiver
    policy: Policy
    ordered: bool


@dataclass
class Seed:
    """One seed's world: its destinations, what it published, which faults when."""

    seed: int
    mode: Mode
    factory: WorkerFactory
    redis: EmbeddedRedis
    dests: list[Dest]
    published: dict[str, tuple[float, str, str]] = field(default_factory=dict)  # id: at,kind,u
    faults: list[tuple[float, str]] = field(default_factory=list)
    live: list[Popen[bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def say(self, text: str) -> None:
        print(f"  [seed {self.seed}] {text}", flush=True)

    # -- faults --------------------------------------------------------------------------
    def kill_worker(self) -> None:
        victim = self.live.pop(0)
        self.factory.kill(victim)
        self.faults.append((time.time(), f"SIGKILL worker {victim.pid}"))
        self.say(f"SIGKILL worker pid {victim.pid}")
        self.live.append(self.factory.start(node=f"s{self.seed}n{len(self.factory.procs)}",
                                            wait=False))

    def restart_redis(self) -> None:
        self.faults.append((time.time(), "Redis restart"))
        self.redis.stop()
        self.redis.start()
        self.say(f"Redis restarted on port {self.redis.port} (AOF)")

    # -- reading the outcome -------------------------------------------------------------
    def requests(self) -> dict[tuple[str, str], list[Received]]:
        got: dict[tuple[str, str], list[Received]] = defaultdict(list)
        for receiver in {id(d.receiver): d.receiver for d in self.dests}.values():
            for r in receiver.received():
                eid = parse_qs(urlsplit(r.target).query).get("e", [""])[0]
                got[(eid, r.path.strip("/"))].append(r)
        return got

    def dead_letters(self) -> dict[tuple[str, str], str]:
        try:
            letters = self.factory.store.list_dead_letters()
        except Exception as exc:  # the store is a file next to us: say so, do not hide it
            self.say(f"could not read dead letters: {exc}")
            return {}
        return {(d["event_id"], d["destination"]): str(d.get("reason", "")) for d in letters}

    def exempt(self, dest: Dest, eid: str, at: float, first_410: float | None) -> bool:
        """A `gone` notification published after its destination answered 410, or one
        never created because its event was matched after the 410 had disabled the
        destination: published shortly before the 410, its entry read late (a consumer
        killed between read and ack is claimed ``claim_idle_s`` later; workers apply a
        configuration change within 2 s) and no notification in Redis at all."""
        if dest.policy.gone_at is None or first_410 is None:
            return False
        if at >= first_410:
            return True
        nkey = self.factory.settings.keys.notification(notification_id(eid, dest.name))
        lag_s = float(self.mode.worker_env.get("RECNOTIFY_CLAIM_IDLE_S", 60)) + 2 + 3
        return at >= first_410 - lag_s and not self.factory.redis.exists(nkey)

    def unsettled(self) -> int:
        got, dead = self.requests(), self.dead_letters()
        first_410 = self.first_410(got)
        n = 0
        for eid, (at, _kind, _u) in list(self.published.items()):
            for d in self.dests:
                copies = got.get((eid, d.name), [])
                if any(200 <= r.status < 300 for r in copies) or (eid, d.name) in dead:
                    continue
                if not self.exempt(d, eid, at, first_410.get(d.name)):
                    n += 1
        return n

    def first_410(self, got: dict[tuple[str, str], list[Received]]) -> dict[str, float]:
        out: dict[str, float] = {}
        for (_eid, name), copies in got.items():
            for r in copies:
                if r.status == 410:
                    out[name] = min(out.get(name, r.at), r.at)
        return out


def destinations_yaml(dests: list[Dest], circuit: dict[str, float]) -> str:
    lines = ["destinations:"]
    for d in dests:
        lines += [f"  - name: {d.name}", "    events: all", "    scope: global",
                  f"    url: '{d.receiver.url('/' + d.name)}'",
                  "    params: 'e=%EVENTID%&k=%EVENT%&u=%UCID%'", "    timeout_s: 5",
                  f"    retry: {RETRY}", f"    circuit: {circuit}"]
        if d.ordered:
            lines.append("    ordered: true")
    return "\n".join(lines) + "\n"


def plan_seed(seed: int, mode: Mode, fast: ChaosReceiver, slow: ChaosReceiver,
              start_at: float) -> tuple[list[Dest], list[tuple[float, str]]]:
    """Draw the seed's destinations, receiver policies and fault times (relative, s)."""
    rng = random.Random(seed)
    reset_s = mode.circuit["reset_s"]
    duration_s = mode.recordings * len(LIFECYCLE) / mode.rate_per_s
    ucids = [f"s{seed}-r{i}" for i in range(mode.recordings)]
    first = Policy(fail_first={"RECORDING_STARTED_EVENT"},
                   fail_first_ucids=set(rng.sample(ucids, len(ucids) // 4)))
    bursts = []
    for _ in range(rng.randint(2, 3)):
        a = start_at + rng.uniform(0.1, 0.8) * duration_s
        bursts.append((a, a + rng.uniform(1.5, 3.0)))
    out_a = start_at + rng.uniform(0.1, 0.4) * duration_s
    outage = Policy(down=[(out_a, out_a + reset_s * rng.uniform(1.5, 2.5) + 1.0)])
    gone = Policy(gone_at=start_at + rng.uniform(0.3, 0.7) * duration_s)
    dests = [Dest("ord", fast, first, True), Dest("unord", fast, first, False),
             Dest("burst", fast, Policy(down=bursts), rng.random() < 0.5),
             Dest("outage", fast, outage, rng.random() < 0.5),
             Dest("slow", slow, Policy(), False), Dest("gone", fast, gone, False)]
    for d in dests:
        d.receiver.policies[d.name] = d.policy
    faults = [(rng.uniform(0.15, 0.9) * duration_s, "worker")
              for _ in range(rng.randint(1, 2))]
    faults.append((rng.uniform(0.3, 0.8) * duration_s, "redis"))
    return dests, sorted(faults)


def publish_all(run: Seed, publisher: Publisher, faults: list[tuple[float, str]]) -> None:
    """Publish every recording's lifecycle, interleaved, injecting the faults on time."""
    rng = random.Random(run.seed * 7919)
    order: list[tuple[str, str]] = []
    cursor = [0] * run.mode.recordings
    while len(order) < run.mode.recordings * len(LIFECYCLE):
        i = rng.choice([j for j, c in enumerate(cursor) if c < len(LIFECYCLE)])
        order.append((f"s{run.seed}-r{i}", LIFECYCLE[cursor[i]]))
        cursor[i] += 1
    started = time.monotonic()
    pending = list(faults)
    for n, (ucid, kind) in enumerate(order):
        while pending and time.monotonic() - started >= pending[0][0]:
            kind_of_fault = pending.pop(0)[1]
            run.kill_worker() if kind_of_fault == "worker" else run.restart_redis()
        delay = started + n / run.mode.rate_per_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for _ in range(30):  # a publish refused while Redis restarts is retried
            try:
                at = time.time()
                eid = publisher.publish(kind, params={"UCID": ucid})
                break
            except PublishError:
                time.sleep(0.2)
        else:
            run.say(f"publish of {kind} for {ucid} refused for 6 s: not accepted")
            continue
        with run.lock:
            run.published[eid] = (at, kind, ucid)
    for _, kind_of_fault in pending:
        run.kill_worker() if kind_of_fault == "worker" else run.restart_redis()


@dataclass
class Outcome:
    notifications: int = 0
    lost: int = 0
    wrongly_dead: int = 0
    order_violations: int = 0
    max_lateness_s: float = 0.0
    dup_other_id: int = 0
    details: list[str] = field(default_factory=list)

    def add(self, other: Outcome) -> None:
        self.notifications += other.notifications
        self.lost += other.lost
        self.wrongly_dead += other.wrongly_dead
        self.order_violations += other.order_violations
        self.max_lateness_s = max(self.max_lateness_s, other.max_lateness_s)
        self.dup_other_id += other.dup_other_id
        self.details += other.details

    @property
    def ok(self) -> bool:
        return not (self.lost or self.wrongly_dead or self.order_violations
                    or self.dup_other_id or self.max_lateness_s > BOUND_S)

    def fields(self) -> str:
        return (f"notifications={self.notifications} lost={self.lost} "
                f"wrongly_dead={self.wrongly_dead} order_violations={self.order_violations} "
                f"max_lateness_s={self.max_lateness_s:.1f} dup_other_id={self.dup_other_id}")


def check(run: Seed) -> Outcome:
    got, dead = run.requests(), run.dead_letters()
    first_410 = run.first_410(got)
    reset_s = run.mode.circuit["reset_s"]
    out = Outcome()
    rightly_dead: set[tuple[str, str]] = set()
    for eid, (at, kind, ucid) in run.published.items():
        for d in run.dests:
            out.notifications += 1
            pair = (eid, d.name)
            copies = got.get(pair, [])
            own = notification_id(eid, d.name)
            out.dup_other_id += sum(1 for r in copies if r.header("webhook-id") != own)
            if any(200 <= r.status < 300 for r in copies):
                continue
            if pair in dead:
                deadline = at + SPAN_S
                gone = d.policy.gone_at is not None and d.name in first_410  # disabled
                if gone or d.policy.refused_until(
                        at, deadline) > deadline - reset_s - PROBE_SLACK_S:
                    rightly_dead.add(pair)
                    continue
                out.wrongly_dead += 1
                out.details.append(
                    f"WRONGLY DEAD seed={run.seed} {d.name} event {eid} ({kind} {ucid}) "
                    f"published {at:.2f}, deadline +{SPAN_S:.1f} s, receiver down "
                    f"{[(round(a - at, 1), round(b - at, 1)) for a, b in d.policy.down]}; "
                    f"reason: {dead[pair]}; receiver saw "
                    f"{[(round(r.at - at, 2), r.status) for r in copies]}")
                continue
            if run.exempt(d, eid, at, first_410.get(d.name)):
                continue
            out.lost += 1
            state = run.factory.redis.hgetall(run.factory.settings.keys.notification(own))
            out.details.append(f"LOST seed={run.seed} {d.name} event {eid} ({kind} {ucid}) "
                               f"published {at:.2f}; receiver saw "
                               f"{[(round(r.at - at, 2), r.status) for r in copies]}; "
                               f"state in Redis: {state}")
    out.order_violations = order_violations(run, got, rightly_dead, out.details)
    out.max_lateness_s = lateness(run, got, set(dead), out.details)
    return out


def first_ok(copies: list[Received]) -> Received | None:
    oks = [r for r in copies if 200 <= r.status < 300]
    return min(oks, key=lambda r: r.at) if oks else None


def order_violations(run: Seed, got: dict[tuple[str, str], list[Received]],
                     rightly_dead: set[tuple[str, str]], details: list[str]) -> int:
    per_recording: dict[str, list[tuple[int, str]]] = defaultdict(list)  # ucid: (#, eid)
    for eid, (_at, kind, ucid) in run.published.items():
        per_recording[ucid].append((LIFECYCLE.index(kind), eid))
    violations = 0
    for d in (d for d in run.dests if d.ordered):
        for ucid, events in per_recording.items():
            events.sort()
            arrived = []
            for index, eid in events:
                r = first_ok(got.get((eid, d.name), []))
                if r is not None:
                    arrived.append((r.at, index, int(r.header("X-Recnotify-Sequence") or 0)))
            arrived.sort()
            indexes = [i for _, i, _ in arrived]
            sequences = [s for _, _, s in arrived]
            any_dead = any((eid, d.name) in rightly_dead for _, eid in events)
            complete = len(arrived) == len(events)
            good = indexes == sorted(indexes) and sequences == sorted(set(sequences))
            if not any_dead:
                good = good and complete and sequences == list(range(1, len(events) + 1))
            if not good:
                violations += 1
                details.append(f"ORDER seed={run.seed} {d.name} {ucid}: arrived "
                               f"{[(LIFECYCLE[i], s) for _, i, s in arrived]}")
    return violations


def lateness(run: Seed, got: dict[tuple[str, str], list[Received]],
             dead: set[tuple[str, str]], details: list[str]) -> float:
    """Per fault: the longest wait from the fault to the next request of a notification
    pending at the fault, over destinations that were not refusing around it (a dead
    letter's end is judged by ``wrongly_dead``, not here)."""
    reset_s = run.mode.circuit["reset_s"]
    worst = 0.0
    for fault_at, what in run.faults:
        window = (fault_at - reset_s - SPAN_S, fault_at + BOUND_S)
        worst_here, which = 0.0, ""
        for d in run.dests:
            refusing = d.policy.gone_at is not None or any(
                a < window[1] and b > window[0] for a, b in d.policy.down)
            if refusing:
                continue
            heads: dict[str, bool] = {}
            for eid, (at, kind, ucid) in sorted(run.published.items(), key=lambda x: x[1][0]):
                if at > fault_at:
                    continue
                copies = got.get((eid, d.name), [])
                ok = first_ok(copies)
                if (ok is not None and ok.at <= fault_at) or (eid, d.name) in dead:
                    continue
                if d.ordered:
                    if ucid in heads:
                        continue  # held behind the recording's head: it waits for it
                    heads[ucid] = True
                after = [r.at for r in copies if r.at > fault_at]
                wait = (min(after) if after else time.time()) - fault_at
                if wait > worst_here:
                    worst_here = wait
                    which = (f"{d.name} event {eid} {kind} {ucid}, published "
                             f"{at - fault_at:+.1f} s; requests at "
                             f"{[(round(r.at - fault_at, 1), r.status) for r in copies]}")
        details.append(f"lateness seed={run.seed} after {what}: {worst_here:.1f} s ({which})")
        worst = max(worst, worst_here)
    return worst


def run_seed(seed: int, mode: Mode, keep: bool) -> Outcome:
    began = time.time()
    tmp = Path(tempfile.mkdtemp(prefix=f"recnotify-chaos-{seed}-"))
    server = EmbeddedRedis(tmp / "redis").start()
    fast, slow = ChaosReceiver(), ChaosReceiver(delay_s=0.4)
    fast.__enter__()
    slow.__enter__()
    factory = WorkerFactory(redis_url=server.url, key_prefix=PREFIX, tmp_path=tmp,
                            extra_env=dict(mode.worker_env))
    try:
        workers = [factory.start(node=f"s{seed}n{i}", wait=False)
                   for i in range(3)]
        for i, proc in enumerate(workers):
            factory.wait_ready(proc, f"{os.uname().nodename}-s{seed}n{i}", timeout_s=60)
        start_at = time.time() + 0.5
        dests, faults = plan_seed(seed, mode, fast, slow, start_at)
        factory.configure(destinations_yaml(dests, mode.circuit))
        time.sleep(max(0.0, start_at - time.time()))
        run = Seed(seed, mode, factory, server, dests, live=workers)
        print(f"seed {seed}: {mode.name}, {mode.recordings} recordings x 6 events x "
              f"{len(dests)} destinations; faults at "
              f"{[(round(t, 1), k) for t, k in faults]} s; ordered: "
              f"{[d.name for d in dests if d.ordered]}", flush=True)
        publish_all(run, Publisher(server.url, key_prefix=PREFIX), faults)
        deadline = time.monotonic() + mode.settle_s
        while run.unsettled() and time.monotonic() < deadline:
            time.sleep(1.0)
        for proc in run.live:
            if proc.poll() is not None:
                run.say(f"worker pid {proc.pid} EXITED by itself (code {proc.returncode})")
        outcome = check(run)
        for line in outcome.details:
            print(f"  {line}", flush=True)
        print(f"seed={seed} {outcome.fields()} elapsed_s={time.time() - began:.0f}",
              flush=True)
        return outcome
    finally:
        factory.stop_all()
        fast.__exit__(None, None, None)
        slow.__exit__(None, None, None)
        server.stop()
        if keep:
            print(f"  kept: {tmp} (worker logs, Redis data, database)", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="short timings (default)")
    size.add_argument("--long", action="store_true", help="default worker/circuit timings")
    parser.add_argument("--seed", type=int, help="the first (or only) seed")
    parser.add_argument("--seeds", type=int, help="how many seeds (default: 2 quick, 1 with"
                                                    " --seed)")
    parser.add_argument("--recordings", type=int, help="recordings per seed (override)")
    parser.add_argument("--keep", action="store_true", help="keep logs and data afterwards")
    args = parser.parse_args(argv)
    mode = LONG if args.long else QUICK
    if args.recordings:
        mode = Mode(**{**mode.__dict__, "recordings": args.recordings})
    first = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    count = args.seeds or (1 if args.seed is not None else 2)
    total = Outcome()
    for seed in range(first, first + count):
        total.add(run_seed(seed, mode, args.keep))
    print(f"seeds={count} {total.fields()}", flush=True)
    return 0 if total.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
