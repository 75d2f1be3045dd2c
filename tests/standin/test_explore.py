"""Tests of the schedule explorer's mechanism (tests/standin/explore.py, sesstandin/schedule.py):
holding requests and releasing them in a chosen order changes the order moto sees them in,
each verdict does what it says, and a seed replays to the identical schedule.

The stand-in runs inside the test process here (as in the explorer), so the scheduler the
fault middleware asks is reachable directly.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import explore  # noqa: E402

BINARY = Path(os.environ.get("SES_SMTP_ROTATOR_BIN") or HERE.parents[1] / "target/lambda-host/bootstrap")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    explore._quiet_logging()
    w = explore.World(BINARY, tmp_path_factory.mktemp("explore"))
    yield w
    w.close()


@pytest.fixture
def fresh(world: Any) -> Any:
    world.reset()
    world.iam.create_user(UserName=explore.USER)
    return world


def client(world: Any, slot: str) -> Any:
    """An IAM client whose requests carry the app id of ``slot`` (as AWS_SDK_UA_APP_ID does
    for the Rust SDK), without retries."""
    import boto3
    from botocore.config import Config

    return boto3.client("iam", endpoint_url=world.ready["endpoint"], region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(user_agent_appid=f"explore-{slot}",
                                      retries={"total_max_attempts": 1, "mode": "standard"}))


def tag_in_thread(world: Any, slot: str, value: str, out: dict[str, Any]) -> threading.Thread:
    c = client(world, slot)

    def run() -> None:
        try:
            c.tag_user(UserName=explore.USER, Tags=[{"Key": "k", "Value": value}])
            out[slot] = "ok"
        except Exception as e:  # noqa: BLE001 - the verdict under test decides what it is
            out[slot] = type(e).__name__ + ":" + str(getattr(e, "response", {}).get("Error", {}).get("Code"))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def moto_tag(world: Any) -> str | None:
    return world.tags().get("k")


def held_both(world: Any) -> dict[str, Any]:
    assert world.sched.wait_for(lambda: len(world.sched.held()) == 2, 10), world.sched.held()
    return {h.slot: h for h in world.sched.held()}


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_the_release_order_is_the_order_moto_acts_in(fresh: Any, order: tuple[str, str]) -> None:
    w = fresh
    w.sched.watch("a")
    w.sched.watch("b")
    out: dict[str, Any] = {}
    threads = [tag_in_thread(w, "a", "from-a", out), tag_in_thread(w, "b", "from-b", out)]
    held = held_both(w)
    assert moto_tag(w) is None, "a held request reached moto"
    first, second = order
    held[first].decide("deliver")
    assert held[first].wait_finished(10)
    assert moto_tag(w) == f"from-{first}"
    held[second].decide("deliver")
    assert held[second].wait_finished(10)
    for t in threads:
        t.join(10)
    # The last request released is the one whose value stays: moto saw them in release order.
    assert moto_tag(w) == f"from-{second}"
    assert out == {"a": "ok", "b": "ok"}
    seen = [r for r in w.st.faults.list_requests() if r.get("slot") in ("a", "b")]
    assert [r["slot"] for r in sorted(seen, key=lambda r: r["end_time"])] == list(order)


def test_unwatched_requests_pass_and_verdicts_do_what_they_say(fresh: Any) -> None:
    w = fresh
    out: dict[str, Any] = {}
    # Not watched: straight through.
    tag_in_thread(w, "c", "free", out).join(10)
    assert out["c"] == "ok" and moto_tag(w) == "free"

    w.sched.watch("a")
    w.sched.watch("b")
    ta, tb = tag_in_thread(w, "a", "lost-a", out), tag_in_thread(w, "b", "before-b", out)
    held = held_both(w)
    # fail_before: the client gets a 500, moto never acts.
    held["b"].decide("fail_before")
    assert held["b"].wait_finished(10)
    tb.join(10)
    assert out["b"] == "ServiceFailureException:ServiceFailure" and not held["b"].acted
    assert moto_tag(w) == "free"
    # lost: moto acts, the client gets a 500 anyway.
    held["a"].decide("lost")
    assert held["a"].wait_finished(10)
    ta.join(10)
    assert out["a"] == "ServiceFailureException:ServiceFailure" and held["a"].acted
    assert moto_tag(w) == "lost-a"

    # crash_after: moto acts, and the answer waits until the driver says the client is gone.
    out.clear()
    ta = tag_in_thread(w, "a", "crash-a", out)
    assert w.sched.wait_for(lambda: bool(w.sched.held("a")), 10)
    h = w.sched.held("a")[0]
    h.decide("crash_after")
    assert h.wait_performed(10)
    assert moto_tag(w) == "crash-a"
    assert not h.wait_finished(0.3) and "a" not in out, "answered before the driver's kill"
    h.resume()
    assert h.wait_finished(10)
    ta.join(10)
    w.sched.unwatch_all()


def replayable_seed() -> int:
    """A seed whose plan has two chains, faults and a crash (so the schedule depends on the
    seed's choices, not only on the function)."""
    import random

    for seed in range(1, 200):
        p = explore.make_plan(seed, random.Random(seed))
        if p.crash and p.fault_rate and p.scenario in ("full_x2", "create_vs_full", "create_x2"):
            return seed
    raise AssertionError("no such seed in 1..199")


@pytest.mark.skipif(not os.access(BINARY, os.X_OK), reason=f"no Lambda binary at {BINARY} (make lambda-bin)")
def test_a_seed_replays_to_the_identical_schedule(world: Any) -> None:
    seed = replayable_seed()
    invariants = set(explore.INVARIANTS)
    first = explore.run_seed(world, seed, invariants)
    again = explore.run_seed(world, seed, invariants)
    releases = [c for c in first.choices if c.startswith("release ")]
    assert {c.split()[1] for c in releases} == {"c0", "c1"}, "both chains had requests released"
    assert any(c.endswith(("-> lost", "-> fail_before", "-> crash_before", "-> crash_after")) for c in releases) \
        or first.plan.fault_rate == 0
    assert first.choices == again.choices
    assert first.violations == again.violations
    other = explore.run_seed(world, seed + 1, invariants)
    assert other.choices != first.choices
