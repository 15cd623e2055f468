"""The async chain client against real devnet processes: pipelining, typed errors, reconnects, events."""

from __future__ import annotations

import asyncio

import pytest
from devnet_process import DevnetProcess, free_port
from proxies import FaultProxy
from substrateinterface import Keypair, SubstrateInterface

from decentralml_core.chain import ChainClient, Checkpoint, DispatchFailed, FieldTooLong, TransactionRejected
from decentralml_core.chain.market import Market, parse_verdict
from decentralml_core.chain.model import (
    AnnotationType,
    ResultSpec,
    StorageType,
    SubmissionStatus,
    TaskSpec,
    TaskStatus,
    TaskType,
    ValidationStrategy,
)
from decentralml_core.chain.rpc import BatchRefused, RpcError

PAYS = 1_000_000


def fresh() -> Keypair:
    return Keypair.create_from_mnemonic(Keypair.generate_mnemonic())


def spec(expiration_block: int, **overrides) -> TaskSpec:
    args = dict(task_type=TaskType.DATA_ANNOTATORS, question="Find the samples", pays_amount=PAYS,
                expiration_block=expiration_block, max_assignments=2,
                validation_strategy=ValidationStrategy.MANUAL_ACCEPT, annotation_type=AnnotationType.IMAGE,
                annotation_media_samples=["sample_1.jpg"], annotation_files=["file_1.jpg", "file_2.jpg"],
                annotation_files_storage_type=StorageType.IPFS)
    args.update(overrides)
    return TaskSpec(**args)


@pytest.fixture
async def client(devnet):
    async with await ChainClient.connect(devnet.url, inclusion_timeout=30) as c:
        yield c


async def fund(client: ChainClient, *accounts: Keypair, amount: int = 10**15) -> None:
    alice = Keypair.create_from_uri("//Alice")
    await asyncio.gather(*[client.submit(alice, "Balances", "transfer_keep_alive",
                                         {"dest": a.ss58_address, "value": amount}) for a in accounts])


async def test_pipelined_submissions_from_many_accounts(client):
    senders = [fresh() for _ in range(5)]
    await fund(client, *senders)
    sink = fresh().ss58_address
    receipts = await asyncio.gather(*[client.submit(s, "Balances", "transfer_keep_alive", {"dest": sink, "value": 1000})
                                      for s in senders for _ in range(20)])
    assert len({r.extrinsic_hash for r in receipts}) == 100
    assert all(r.find("Balances", "Transfer")[0]["amount"] == 1000 for r in receipts)
    assert all(r.fee == r.find("TransactionPayment", "TransactionFeePaid")[0]["actual_fee"] > 0 for r in receipts)
    assert await client.free_balance(sink) == 100 * 1000
    for s in senders:
        assert await client.request("system_accountNextIndex", [s.ss58_address]) == 20


async def test_dispatch_error_is_typed_and_final(client):
    bob = Keypair.create_from_uri("//Bob")
    before = await client.request("system_accountNextIndex", [bob.ss58_address])
    with pytest.raises(DispatchFailed) as info:
        await client.submit(bob, "DecentralMLModule", "assign_task", {"task_id": 987_654})
    assert (info.value.pallet, info.value.error) == ("DecentralMLModule", "TaskNotFound")
    assert info.value.block_number is not None
    assert await client.request("system_accountNextIndex", [bob.ss58_address]) == before + 1  # not retried


async def test_pool_refusal_is_typed_and_gives_the_nonce_back(client):
    poor = fresh()
    with pytest.raises(TransactionRejected) as info:
        await client.submit(poor, "System", "remark", {"remark": "0x00"})
    assert info.value.code == 1010 and "pay" in info.value.data
    await fund(client, poor)
    receipt = await client.submit(poor, "System", "remark", {"remark": "0x01"})
    assert receipt.block_number > 0


async def test_nonce_resyncs_when_another_client_used_the_account(client, devnet):
    dave = fresh()
    await fund(client, dave)
    await client.submit(dave, "System", "remark", {"remark": "0x01"})  # the client now tracks nonce 1
    si = SubstrateInterface(url=devnet.url)
    si.submit_extrinsic(si.create_signed_extrinsic(si.compose_call("System", "remark", {"remark": "0x02"}),
                                                   keypair=dave), wait_for_inclusion=True)
    si.close()
    receipt = await client.submit(dave, "System", "remark", {"remark": "0x03"})  # nonce 1 is stale: resync
    assert receipt.find("System", "ExtrinsicSuccess")
    assert await client.request("system_accountNextIndex", [dave.ss58_address]) == 3


def test_bounds_are_checked_before_signing():
    with pytest.raises(FieldTooLong) as info:
        spec(10, question="q" * 2049)
    assert (info.value.field, info.value.limit, info.value.actual) == ("question", 2048, 2049)
    with pytest.raises(FieldTooLong, match=r"annotation_files\[1\] is 513 bytes"):
        spec(10, annotation_files=["a", "é" * 256 + "x"])
    with pytest.raises(FieldTooLong, match="101 entries"):
        spec(10, annotation_files=["a"] * 101)
    with pytest.raises(FieldTooLong, match="result_path"):
        ResultSpec(0, result_path="p" * 513)


async def test_market_flow_with_the_full_pallet(client):
    market = Market(client)
    assert market.capabilities.verdict_calls
    alice, worker = Keypair.create_from_uri("//Alice"), fresh()
    await fund(client, worker)
    task_id, _ = await market.create_task(alice, spec(await client.block_number() + 100))
    task = await market.task(task_id)
    assert (task.status, task.creator, task.annotation_files, task.escrow) == \
        (TaskStatus.CREATED, alice.ss58_address, ["file_1.jpg", "file_2.jpg"], 2 * PAYS)
    assert task_id in await market.open_task_ids()
    sid, _ = await market.assign_task(worker, task_id)
    await market.send_task_result(worker, ResultSpec(sid, result='{"boxes": 3}', result_path="bafy-outputs",
                                                     result_storage_type=StorageType.IPFS,
                                                     result_storage_credentials=""))
    pending = await market.submission(sid)
    assert (pending.status, pending.worker, pending.result_path) == \
        (SubmissionStatus.PENDING_VALIDATION, worker.ss58_address, "bafy-outputs")
    before = await client.free_balance(worker.ss58_address)
    receipt = await market.accept_task_result(alice, sid)
    assert receipt.find("DecentralMLModule", "TaskResultAccepted")[0]["amount"] == PAYS
    assert await client.free_balance(worker.ss58_address) == before + PAYS
    with pytest.raises(DispatchFailed, match="AlreadyDecided"):
        await market.accept_task_result(alice, sid)
    assert [s.submission_id for s in await market.submissions(task_id)] == [sid]
    assert sid in await market.worker_submissions(worker.ss58_address)


async def test_market_on_an_upstream_node_pays_by_transfer_and_records_verdicts(tmp_path):
    with DevnetProcess("--pallet", "upstream", log_path=tmp_path / "devnet.log") as node:
        async with await ChainClient.connect(node.url, inclusion_timeout=30) as client:
            market = Market(client)
            assert not market.capabilities.verdict_calls
            alice, good, bad = Keypair.create_from_uri("//Alice"), fresh(), fresh()
            await fund(client, good, bad)
            task_id, _ = await market.create_task(alice, spec(await client.block_number() + 100))
            (s1, _), (s2, _) = await asyncio.gather(market.assign_task(good, task_id), market.assign_task(bad, task_id))
            for who, sid in ((good, s1), (bad, s2)):
                await market.send_task_result(who, ResultSpec(sid, result="{}"))
            before = await client.free_balance(good.ss58_address)
            paid = await market.accept_task_result(alice, s1)
            assert paid.find("Balances", "Transfer")[0]["amount"] == PAYS
            assert await client.free_balance(good.ss58_address) == before + PAYS
            rejected = await market.reject_task_result(alice, s2, "empty result")
            assert rejected.find("System", "Remarked")
            assert await market.verdicts_at(rejected.block_hash) == [(alice.ss58_address, {
                "schema": "decentralml.verdict/1", "submission_id": s2, "task_id": task_id, "verdict": "reject",
                "amount": 0, "reason": "empty result"})]
            assert parse_verdict("not json") is None and parse_verdict('{"schema": "other"}') is None
            with pytest.raises(DispatchFailed, match="NotAuthorized"):
                await market.accept_task_result(good, s2)


async def test_event_stream_catches_up_and_survives_a_node_restart(tmp_path):
    port, db = free_port(), str(tmp_path / "chain.sqlite")
    alice = Keypair.create_from_uri("//Alice")
    node = DevnetProcess(db=db, port=port, log_path=tmp_path / "devnet.log").start()
    try:
        async with await ChainClient.connect(node.url, reconnect_for=30) as client:
            for i in range(3):
                await client.submit(alice, "System", "remark_with_event", {"remark": f"0x0{i}"})
            seen = []

            async def collect(since, until: int) -> None:
                async for event in client.events(since=since):
                    seen.append(event)
                    if event.pallet == "System" and event.name == "Remarked":
                        until -= 1
                        if until == 0:
                            return

            await asyncio.wait_for(collect(Checkpoint(1), 3), 30)  # catch up blocks 1..3
            assert [e.block_number for e in seen if e.name == "Remarked"] == [1, 2, 3]
            resume = Checkpoint.after(seen[-1])
            consumer = asyncio.create_task(collect(resume, 2))
            node.stop(kill=True)
            node.start()
            for i in range(2):  # submitted through the reconnected client
                await client.submit(alice, "System", "remark_with_event", {"remark": f"0x1{i}"})
            await asyncio.wait_for(consumer, 30)
            positions = [e.position for e in seen]
            assert positions == sorted(set(positions)), "an event was repeated or reordered"
            assert [e.block_number for e in seen if e.name == "Remarked"] == [1, 2, 3, 4, 5]
            block4 = [e.position for e in seen if e.block_number == 4]
            assert block4 == [(4, i) for i in range(len(block4))], "an event was lost"
    finally:
        node.stop()


async def test_the_runtimes_own_socket_failing_is_a_connection_loss(devnet):
    """substrate-interface's socket is cut with the rest (a proxy, a node restart): what it raises must
    be ConnectionLost, which workers retry, not a task failure (found by `make faults`)."""
    from websocket import WebSocketConnectionClosedException

    from decentralml_core.chain.errors import ConnectionLost

    async with await ChainClient.connect(devnet.url) as client:
        def cut() -> None:
            raise WebSocketConnectionClosedException("Connection to remote host was lost.")

        with pytest.raises(ConnectionLost, match="WebSocketConnectionClosedException"):
            await client.runtime.run(cut)
        assert await client.block_number() >= 0  # and the client goes on


async def test_a_map_is_read_in_pages_at_one_block_through_the_clients_own_socket(devnet):
    """storage_map pages keys and values over the client's connection (which reconnects), not over
    substrate-interface's socket: that one, cut by a proxy, hung agents' steps and shutdown in make faults."""
    async with await ChainClient.connect(devnet.url) as client:
        assert not getattr(client.runtime.si.websocket, "connected", False)  # closed (or never opened: a
        # runtime loaded in process over the devnet's in-process transport, shared with this client) once loaded
        whole = await client.storage_map("System", "Account")
        paged = await client.storage_map("System", "Account", page=2)
        assert len(whole) >= 3 and sorted(map(repr, paged)) == sorted(map(repr, whole))
        alice = dict(whole)["5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"]
        assert alice["data"]["free"] == await client.free_balance("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY")
        assert not getattr(client.runtime.si.websocket, "connected", False)


class FreezingProxy:
    """TCP to the node until frozen: then the connections it has forward nothing and close nothing (a
    peer gone without a FIN, a NAT that forgot the flow); connections made after pass again."""

    def __init__(self, target_port: int) -> None:
        self.target_port, self.generation, self.handlers = target_port, 0, set()

    async def start(self) -> FreezingProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def freeze(self) -> None:
        self.generation += 1

    async def close(self) -> None:
        self.server.close()
        for task in self.handlers:
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    async def _serve(self, reader, writer) -> None:
        self.handlers.add(asyncio.current_task())
        generation = self.generation
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        try:
            await asyncio.gather(self._pipe(reader, up_writer, generation), self._pipe(up_reader, writer, generation))
        finally:
            writer.transport.abort()
            up_writer.transport.abort()

    async def _pipe(self, reader, writer, generation: int) -> None:
        while data := await reader.read(65536):
            if self.generation != generation:
                await asyncio.Event().wait()  # frozen: until the test ends
            writer.write(data)
            await writer.drain()


async def test_a_connection_gone_silent_is_given_up_for_a_new_one(devnet, monkeypatch):
    """Found by make faults: a connection that stopped carrying bytes without closing held an agent's
    read (and its shutdown) until the 30 s heartbeat; now a 1.5-heartbeat silence ends it, and the closing
    handshake no one answers is waited 1 s, not the 10 s connect timeout (this read took 11.5 s, now 2.5)."""
    from urllib.parse import urlparse

    from structlog.testing import capture_logs

    from decentralml_core.chain import rpc

    monkeypatch.setattr(rpc, "HEARTBEAT_S", 1.0)
    proxy = await FreezingProxy(urlparse(devnet.url).port).start()
    try:
        async with await ChainClient.connect(f"ws://127.0.0.1:{proxy.port}") as client:
            before = await client.block_number()
            proxy.freeze()
            with capture_logs() as logs:
                assert await asyncio.wait_for(client.block_number(), 8) >= before  # 1.5 + 1 s + a reconnect
            assert "rpc_connection_lost" in [e["event"] for e in logs]
    finally:
        await proxy.close()


async def test_a_node_that_answers_pings_but_no_request_is_given_up(monkeypatch):
    """A node (or a proxy) that keeps the socket and the pings alive but answers nothing."""
    from aiohttp import web

    from decentralml_core.chain import rpc
    from decentralml_core.chain.errors import ConnectionLost

    async def mute(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/", mute)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        connection = await rpc.WebSocketRpc.connect(f"ws://127.0.0.1:{runner.addresses[0][1]}")
        monkeypatch.setattr(rpc, "REQUEST_TIMEOUT_S", 1.0)
        with pytest.raises(ConnectionLost, match="did not answer chain_getHeader in 1 s"):
            await connection.request("chain_getHeader")
        assert connection.closed
        with pytest.raises(ConnectionLost):
            await connection.request("chain_getHeader")
    finally:
        await runner.cleanup()


async def test_a_handshake_that_never_ends_is_a_connection_loss():
    """A listener that accepts and never answers (a frozen proxy, a node stuck at start): connect gives up."""
    from decentralml_core.chain import rpc
    from decentralml_core.chain.errors import ConnectionLost

    held = []
    server = await asyncio.start_server(lambda reader, writer: held.append(writer), "127.0.0.1", 0)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(ConnectionLost, match="cannot connect"):
            await rpc.WebSocketRpc.connect(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}", timeout=1.0)
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        for writer in held:
            writer.transport.abort()
        server.close()


async def remark_blocks(client: ChainClient, count: int) -> tuple[int, int]:
    """``count`` blocks of one ``remark_with_event`` each (instant seal): (first, last) block number."""
    alice = Keypair.create_from_uri("//Alice")
    start = await client.block_number() + 1
    for i in range(count):
        await client.submit(alice, "System", "remark_with_event", {"remark": f"0x{i:02x}"})
    return start, await client.block_number()


async def blocks_and_their_events(url: str, count: int) -> tuple[int, int, list]:
    """``count`` blocks with a remark each: (first, last, every event's position in them, in chain order)."""
    async with await ChainClient.connect(url) as client:
        start, head = await remark_blocks(client, count)
        return start, head, [e.position for n in range(start, head + 1) for e in await client.events_at(n)]


async def stream_until(client: ChainClient, start: int, last, on_event=lambda seen: None) -> list:
    """The positions ``client``'s event stream yields from block ``start`` up to the event at ``last``."""
    seen: list = []
    async for event in client.events(Checkpoint(start)):
        seen.append(event.position)
        on_event(seen)
        if event.position == last:
            break
    return seen


def small_catch_up_windows(monkeypatch, window: int, batch: int) -> None:
    from decentralml_core.chain import client as client_module

    monkeypatch.setattr(client_module, "CATCH_UP_WINDOW", window)
    monkeypatch.setattr(client_module, "CATCH_UP_BATCH", batch)


async def test_catch_up_keeps_many_blocks_in_flight_and_yields_them_in_order(devnet, monkeypatch):
    """Through a link that delays every chunk 20 ms each way (so answers to the batches in flight arrive
    together, in any order), the stream yields exactly the blocks' events, in chain order. How fast:
    bench/catch_up.py."""
    small_catch_up_windows(monkeypatch, 24, 6)  # 60 blocks: several batches, 4 in flight
    start, head, expected = await blocks_and_their_events(devnet.url, 60)
    proxy = await FaultProxy(devnet.port, delay_s=0.02).start()
    try:
        async with await ChainClient.connect(f"ws://127.0.0.1:{proxy.port}") as slow:
            seen = await stream_until(slow, start, expected[-1])
    finally:
        await proxy.close()
    assert seen == expected and len({n for n, _ in seen}) == head - start + 1


async def test_a_batch_answers_each_call_in_its_place_and_an_error_in_place_of_a_refused_one(client):
    rpc = client._rpc
    genesis = await client.request("chain_getBlockHash", [0])
    answers = await rpc.batch([("chain_getBlockHash", [0]), ("state_getStorage", ["0x00", "0x" + "ab" * 32]),
                               ("system_chain", [])])
    assert answers[0] == genesis and answers[2] == "Development"
    assert isinstance(answers[1], RpcError) and answers[1].code == 4003  # unknown block, as a node says it
    assert await rpc.batch([]) == []


async def test_catch_up_from_a_node_that_refuses_batches_reads_block_by_block(tmp_path):
    """A node started with --rpc-disable-batch-requests answers a batch with one error of null id (as
    jsonrpsee does): the client reads one call at a time from then on and misses no event."""
    with DevnetProcess("--rpc-disable-batch-requests", log_path=tmp_path / "devnet.log") as node:
        async with await ChainClient.connect(node.url) as client:
            with pytest.raises(BatchRefused):
                await client._rpc.batch([("system_chain", []), ("system_name", [])])
            assert await client.request("system_chain") == "Development"  # the connection still serves
        start, _, expected = await blocks_and_their_events(node.url, 12)
        async with await ChainClient.connect(node.url) as fresh:  # nothing decoded yet: every block asked
            seen = await stream_until(fresh, start, expected[-1])
            assert seen == expected and fresh._batches_refused


async def test_a_connection_dropped_while_batches_are_in_flight_resumes_the_catch_up_without_a_gap(devnet, monkeypatch):
    """The proxy cuts every connection while the stream is a few blocks into its catch-up, batches still in
    flight: the client reconnects and the stream goes on from the block it was at, missing and repeating
    nothing."""
    small_catch_up_windows(monkeypatch, 16, 4)
    start, _, expected = await blocks_and_their_events(devnet.url, 40)
    proxy = await FaultProxy(devnet.port, delay_s=0.02).start()

    def cut_ten_events_in(seen: list) -> None:  # block start + 2: batches up to start + 15 asked, most unanswered
        if len(seen) == 10:
            proxy.drop()

    try:
        async with await ChainClient.connect(f"ws://127.0.0.1:{proxy.port}") as cut:
            first = cut._rpc
            seen = await stream_until(cut, start, expected[-1], cut_ten_events_in)
            assert cut._rpc is not first and cut.health["chain"] == "ok"  # reconnected, and caught up
    finally:
        await proxy.close()
    assert seen == expected


async def test_odd_items_in_a_frame_are_passed_over_and_the_connection_keeps_answering():
    """A node's batch reply holding strings, numbers or an error of no id and no batch in flight is hostile
    or broken: the reader logs it and goes on (it must not die, which would drop the connection)."""
    from decentralml_core.chain import rpc

    framed = rpc.FramedRpc("ws://127.0.0.1:9")
    waiting = asyncio.get_running_loop().create_future()
    framed._pending[7] = waiting
    for junk in ('["abc", {"jsonrpc": "2.0", "error": "not an object"}, {"id": null, "error": {"code": -1}}]',
                 '[5]', '{"id": null, "error": {"code": -32005, "message": "Batched requests are not supported"}}'):
        framed._receive(junk)
    framed._receive('{"jsonrpc": "2.0", "id": 7, "result": "0x01"}')
    assert waiting.result() == "0x01"


async def test_following_with_an_extrinsic_in_flight_asks_each_block_once(client):
    """The follower settling our extrinsic and the event stream read the same block: its hash is asked
    once, its body and events come in one batch, and the stream yields the events the receipt holds."""
    asked: list[tuple[str, list]] = []
    batched: list[list[str]] = []
    rpc, request, batch = client._rpc, client._rpc.request, client._rpc.batch

    async def counted_request(method, params=None):
        asked.append((method, params))
        return await request(method, params)

    async def counted_batch(calls):
        batched.append([method for method, _ in calls])
        return await batch(calls)

    rpc.request, rpc.batch = counted_request, counted_batch
    start = await client.block_number() + 1
    receipt = await client.submit(Keypair.create_from_uri("//Alice"), "Balances", "transfer_keep_alive",
                                  {"dest": fresh().ss58_address, "value": 10**12})
    mine = [(receipt.block_number, e.index) for e in receipt.events]
    seen = await asyncio.wait_for(stream_until(client, start, mine[-1]), 30)
    assert set(mine) <= set(seen)
    assert asked.count(("chain_getBlockHash", [receipt.block_number])) == 1
    assert ["chain_getBlock", "state_getStorage"] in batched
    assert not [p for m, p in asked if m in ("chain_getBlock", "state_getStorage") and receipt.block_hash in p]


async def test_a_maps_rows_unchanged_since_the_last_read_are_not_decoded_again(client, monkeypatch):
    """A creator's sweep reads every submission every 2 s: rows whose bytes did not change are taken from
    what was decoded before, as copies (a caller changing its rows changes no later read)."""
    first = await client.storage_map("System", "Account")
    first[0][1]["data"]["free"] = -1
    decodes = []
    schema_decode = client.runtime.schema.decode
    monkeypatch.setattr(client.runtime.schema, "decode", lambda *a: decodes.append(a) or schema_decode(*a))
    again = await client.storage_map("System", "Account")
    assert decodes == [] and len(again) == len(first) >= 3
    async with await ChainClient.connect(client.url) as other:  # decoded afresh
        assert sorted(map(repr, again)) == sorted(map(repr, await other.storage_map("System", "Account")))
    dest = fresh().ss58_address
    await client.submit(Keypair.create_from_uri("//Alice"), "Balances", "transfer_keep_alive",
                        {"dest": dest, "value": 10**12})
    changed = dict(await client.storage_map("System", "Account"))
    assert changed[dest]["data"]["free"] == 10**12 and len(decodes) >= 4  # the new row and Alice's: key and value each


async def test_event_streams_cancelled_while_blocks_arrive_all_end_and_the_next_one_follows(client):
    """Streams waiting for the next block, cancelled at odd moments while blocks come in (as an engine stops):
    each ends at once, and a stream opened afterwards still follows. While streams waited on an
    asyncio.Condition, a cancelled one had to re-acquire its lock, and an engine stopping after its tasks were
    paid once never returned (its stream's task left "cancelling" on a lock future no one would set)."""
    alice = Keypair.create_from_uri("//Alice")

    async def remarks(count: int) -> None:
        for i in range(count):
            await client.submit(alice, "System", "remark_with_event", {"remark": f"0x{i % 256:02x}"})

    producing = asyncio.create_task(remarks(30))
    try:
        for turn in range(40):
            streams = [client.events() for _ in range(4)]
            waiting = [asyncio.ensure_future(anext(s)) for s in streams]
            for _ in range(turn % 5):
                await asyncio.sleep(0)
            for task in waiting:
                task.cancel()
            await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)
            await asyncio.wait_for(asyncio.gather(*[s.aclose() for s in streams]), 5)
    finally:
        await producing
    follower = client.events()
    late = asyncio.create_task(remarks(1))
    event = await asyncio.wait_for(anext(follower), 10)
    assert event.block_number > 0
    await late
    await follower.aclose()
