"""The SDK: use a running node from your own program, and host a provider in it.

    from actors.sdk import NodeClient, attach
    node = NodeClient("configs/node-a.toml")
    node.kv_set("k", {"w": 3})
    with attach(MyProvider, "configs/node-a.toml") as hosted:
        with hosted.writing() as p:
            p.set("b1", 5)
        hosted.read(lambda p: p.get("b1"))

Theory of operation
-------------------
* `NodeClient` (client.py) talks to one node through its control socket. Every
  call opens a fresh DEALER (`transport.rpc.call`) on a context the client owns,
  so one client may be shared by threads. Before sending, it checks that
  something listens on the control socket file; while nothing does (the node
  is restarting) it retries for `retry_s`, then raises `NodeUnavailable`. A
  request that was sent is never resent, since it may not be idempotent: a
  timeout raises `RpcTimeout`, or `NodeUnavailable` if the node vanished.
* `NodeClient.events` is the ZeroMQ guide's Clone pattern: subscribe, take a
  snapshot, then yield only events newer than its `seq`. A node restart
  (a new supervisor pid, or a `seq` that goes backwards) starts the seq
  count afresh, so the stream takes and yields a new snapshot. An outage is
  waited out, or with `give_up_s` ends the stream with `NodeUnavailable`
  (`lbcluster events --grace`).
* `attach` (hosted.py) hosts a `StateProvider` inside the user's program. A
  daemon *host thread* (host_loop.py) binds a ROUTER on an abstract ipc
  endpoint and registers it with the node's anti-entropy actor (control op
  "attach"); from then on that actor sends the provider remote states
  ("apply"), its Lamport clock ("clock") and may ask for its state
  ("sync_state", "digest"). Local writes go the other way as "local"
  requests. The registration is renewed every `reattach_s`. A first
  registration (and one after a failed request, or after the node forgot the
  registration: a restarted node or anti-entropy actor, an apply that timed
  out) is answered with the node's copy of every state of the type; the
  provider applies what it lacks and sends back what the node lacks. A renewal
  of a registration that is still current is answered in a few bytes, so the
  table does not travel every period.
* Threads: the provider is touched only under one lock, by the host thread
  and by `writing()` / `read()` in the user's threads. `writing()` never
  waits on the network: it queues the drained changes and wakes the host
  thread through a pipe. Each socket belongs to one thread. The host thread
  never raises into the user's program: it logs through `logging` and counts.
"""

from actors.sdk.client import NodeClient, NodeUnavailable
from actors.sdk.hosted import HostedProvider, attach
from transport.rpc import RpcError, RpcTimeout

__all__ = ["HostedProvider", "NodeClient", "NodeUnavailable", "RpcError", "RpcTimeout",
           "attach"]
