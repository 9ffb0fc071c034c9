"""``hipnode outbox list|retry`` on a real catalogue file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from node.cli import build_parser
from storage.db import Base, make_engine, make_session_factory
from storage.models import Delivery, DeliveryState


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    engine = make_engine(f"sqlite:///{tmp_path / 'hipnode.sqlite3'}")
    Base.metadata.create_all(engine)
    with make_session_factory(engine)() as s:
        for i, state in enumerate(
            [DeliveryState.DONE, DeliveryState.DEAD, DeliveryState.PENDING, DeliveryState.DEAD]
        ):
            s.add(
                Delivery(
                    sop_instance_uid=f"1.2.3.{i}",
                    path=f"r/{i}.dcm",
                    destination="pacs",
                    state=state,
                    attempts=3,
                    last_status=0xA900 if state == DeliveryState.DEAD else None,
                    last_error="0xA900 Error: data set does not match SOP class"
                    if state == DeliveryState.DEAD
                    else None,
                )
            )
        s.commit()
    engine.dispose()
    return tmp_path


def outbox(store: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the command in-process (parser + run, as ``hipnode`` does) and capture its output."""
    argv = ["outbox", "--storage", str(store), *args]
    parsed = build_parser(only="outbox").parse_args(argv)
    code = parsed._run(parsed)
    out, err = capsys.readouterr()
    return code, out, err


def states(store: Path) -> dict[str, str]:
    engine = make_engine(f"sqlite:///{store / 'hipnode.sqlite3'}")
    with make_session_factory(engine)() as s:
        result = {d.sop_instance_uid: d.state.value for d in s.scalars(select(Delivery))}
    engine.dispose()
    return result


def test_list_all_as_table(store, capsys) -> None:
    code, out, _ = outbox(store, capsys, "list")
    assert code == 0
    assert "4 deliveries" in out and "0xA900" in out and "1.2.3.2" in out


def test_list_dead_as_json(store, capsys) -> None:
    code, out, _ = outbox(store, capsys, "list", "--state", "dead", "--json")
    assert code == 0
    shown = json.loads(out)
    assert [d["sop_instance_uid"] for d in shown] == ["1.2.3.1", "1.2.3.3"]
    assert all(d["state"] == "dead" and d["last_status"] == 0xA900 for d in shown)


def test_list_several_states(store, capsys) -> None:
    _, out, _ = outbox(store, capsys, "list", "--state", "done", "--state", "pending", "--json")
    assert sorted(d["state"] for d in json.loads(out)) == ["done", "pending"]


def test_list_by_destination(store, capsys) -> None:
    _, out, _ = outbox(store, capsys, "list", "--destination", "pacs", "--json")
    assert len(json.loads(out)) == 4
    _, out, _ = outbox(store, capsys, "list", "--destination", "archive", "--json")
    assert json.loads(out) == []


def test_retry_one_by_id(store, capsys) -> None:
    code, out, _ = outbox(store, capsys, "retry", "2")
    assert code == 0 and "re-queued 1" in out
    assert states(store) == {
        "1.2.3.0": "done",
        "1.2.3.1": "pending",
        "1.2.3.2": "pending",
        "1.2.3.3": "dead",
    }


def test_retry_all_dead(store, capsys) -> None:
    code, out, _ = outbox(store, capsys, "retry", "--all-dead")
    assert code == 0 and "re-queued 2" in out
    assert sorted(states(store).values()) == ["done", "pending", "pending", "pending"]
    engine = make_engine(f"sqlite:///{store / 'hipnode.sqlite3'}")
    with make_session_factory(engine)() as s:
        requeued = s.scalars(
            select(Delivery).where(Delivery.sop_instance_uid.in_(["1.2.3.1", "1.2.3.3"]))
        )
        assert [d.attempts for d in requeued] == [0, 0]  # a fresh attempt budget
    engine.dispose()


def test_retry_refuses_done_and_unknown_rows(store, capsys) -> None:
    code, _, err = outbox(store, capsys, "retry", "1")
    assert code == 1 and "is done" in err
    code, _, err = outbox(store, capsys, "retry", "2", "99")
    assert code == 1 and "no delivery with id 99" in err
    assert states(store)["1.2.3.1"] == "dead"  # nothing half-applied


def test_retry_needs_a_target(store, capsys) -> None:
    code, _, err = outbox(store, capsys, "retry")
    assert code == 2 and "--all-dead" in err


def test_missing_catalogue_is_a_clear_error(tmp_path, capsys) -> None:
    code, _, err = outbox(tmp_path / "nothing-here", capsys, "list")
    assert code == 2 and "no catalogue at" in err


def test_real_process(store) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "node", "outbox", "--storage", str(store), "list", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 4


def test_bad_configuration_names_the_field(store, capsys, tmp_path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[outbox]\nmax_attempts = 0\n")
    code, _, err = outbox(store, capsys, "--config", str(config), "list")
    assert code == 2 and "outbox.max_attempts" in err
