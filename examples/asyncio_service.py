"""An asyncio service that embeds a paxos-core node: a tiny line protocol over TCP.

    PUT key value   ->  OK
    GET key         ->  value  (or "(none)")

Run one per node of a cluster made by `paxos-core init --nodes 3 DIR`:

    python examples/asyncio_service.py DIR/node1.toml 9001
    python examples/asyncio_service.py DIR/node2.toml 9002
    python examples/asyncio_service.py DIR/node3.toml 9003

and talk to any of them (`nc 127.0.0.1 9001`): writes are replicated, reads are lease reads on the master.
"""
import asyncio
import sys

import paxos_core


async def handle(node, reader, writer):
    while line := await reader.readline():
        words = line.decode().split()
        try:
            if len(words) == 3 and words[0] == "PUT":
                await node.kv.put_async(words[1].encode(), words[2].encode())
                reply = "OK"
            elif len(words) == 2 and words[0] == "GET":
                value = await node.kv.get_async(words[1].encode())
                reply = "(none)" if value is None else value.decode()
            else:
                reply = "ERR usage: PUT key value | GET key"
        except paxos_core.Timeout:
            reply = "ERR timeout (the write may or may not have happened)"
        except paxos_core.PaxosError as exc:
            reply = "ERR %s" % exc
        writer.write(reply.encode() + b"\n")
        await writer.drain()
    writer.close()


async def main(config_path, port):
    node = await asyncio.to_thread(paxos_core.Node, config_path)     # starts this node's worker processes
    node.on_master_change(lambda group, master, epoch: print("group %d: master is node %d" % (group, master)))
    server = await asyncio.start_server(lambda r, w: handle(node, r, w), "127.0.0.1", port)
    print("serving on 127.0.0.1:%d" % port, flush=True)
    try:
        async with server:
            await server.serve_forever()
    finally:
        await asyncio.to_thread(node.close)


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    except KeyboardInterrupt:
        pass
