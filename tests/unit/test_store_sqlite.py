"""SqliteStore: transactions, revisions, change feed (incl. blocking wait), compaction, durability."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from topology.store.backends import open_store
from topology.store.sqlite import SqliteStore
from topology.store import Compacted
from tests.unit.store_contract import *  # noqa: F401,F403 — the backend-neutral contract tests


@pytest.fixture()
def store(tmp_path):
    s = open_store(f"sqlite://{tmp_path}/tf.db")
    yield s
    s.close()


def test_one_revision_step_per_record(store):
    """SQLite numbers its changes densely: a transaction of N records advances N."""
    with store.transaction() as t:
        t.put("network", {"id": "n1"})
        t.put("port", {"id": "p1", "network_id": "n1"})
    assert store.revision() == 2
    with store.transaction() as t:
        t.delete("port", "p1")
    assert [c.revision for c in store.changes(0)] == [1, 2, 3]


def test_second_process_writes_are_seen_by_waiting_reader(tmp_path):
    path = tmp_path / "shared.db"
    reader = SqliteStore(str(path))
    writer = SqliteStore(str(path))
    got = []
    thread = threading.Thread(target=lambda: got.extend(reader.changes(0, timeout=5)))
    thread.start()
    time.sleep(0.1)
    with writer.transaction() as t:
        t.put("chassis", {"id": "c1"})
    thread.join(5)
    assert [c.id for c in got] == ["c1"]
    assert reader.get("chassis", "c1") == {"id": "c1"}
    reader.close()
    writer.close()


def test_compaction_raises_compacted_for_old_revisions(tmp_path):
    s = SqliteStore(str(tmp_path / "c.db"), keep_changes=10)
    for i in range(30):
        with s.transaction() as t:
            t.put("network", {"id": "n", "v": i})
    assert s.revision() == 30
    with pytest.raises(Compacted):
        s.changes(0)
    assert [c.revision for c in s.changes(28)] == [29, 30]
    s.close()


def test_memory_store():
    s = open_store("memory://")
    with s.transaction() as t:
        t.put("network", {"id": "n"})
    assert s.revision() == 1 and s.get("network", "n") == {"id": "n"}


def test_unknown_url():
    with pytest.raises(ValueError):
        open_store("foo://bar")


WRITER = textwrap.dedent("""
    import sys
    from topology.store.sqlite import SqliteStore
    store = SqliteStore(sys.argv[1])
    i = 0
    while True:
        i += 1
        with store.transaction() as t:
            t.put("network", {"id": f"n{i}", "i": i})
            t.put("port", {"id": f"p{i}", "network_id": f"n{i}"})
        print(i, store.revision(), flush=True)   # acknowledged only after COMMIT returned
""")


def test_survives_kill_9_while_writing(tmp_path):
    """Every acknowledged write is there after kill -9, and revisions continue."""
    path = str(tmp_path / "durable.db")
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, str(script), path], stdout=subprocess.PIPE, text=True, env=env)
    acked = []
    deadline = time.monotonic() + 20
    while len(acked) < 200 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked.append(tuple(int(x) for x in line.split()))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    assert len(acked) >= 50, "writer did not make progress"
    last_i, last_rev = acked[-1]
    store = SqliteStore(path)
    for i in range(1, last_i + 1):
        assert store.get("network", f"n{i}") == {"id": f"n{i}", "i": i}
        assert store.get("port", f"p{i}") is not None
    assert store.revision() >= last_rev
    assert store.revision() % 2 == 0  # transactions are all-or-nothing: never half of one
    rev = store.revision()
    with store.transaction() as t:
        t.put("router", {"id": "after-crash"})
    assert store.revision() == rev + 1
    assert store.changes(rev)[0].id == "after-crash"
    store.close()
