#!/usr/bin/env python3
"""Apache Avro's own Python implementation as a Flume Avro RPC peer, for Millrace's
interoperability tests (docs/avro.md, "Testing against an independent implementation").

Python's `avro` package has the protocol parser, the datum reader and writer, the
handshake and the call format (`avro.ipc.Requestor`, `avro.ipc.Responder`), but neither
Netty framing nor a stateful connection (its Requestor sends a handshake before every
call, its Responder expects one in every request). This module adds those, and nothing
else, so that the bytes are Python avro's:

* `read_frame` / `write_frame`: Netty framing (serial, buffer count, length-prefixed
  buffers; signed 32-bit big-endian), requests cut into 8 KiB buffers as Java does.
* `DeflateWriter` / `InflateReader`: one zlib stream per direction, `Z_SYNC_FLUSH` per
  frame, as Flume's `compression-type = deflate`.
* `NettyTransceiver`: a transceiver over any pair of binary streams (pipes, or a socket's
  `makefile`), `NettyTransceiver.connect(host, port)` for TCP.
* `StatefulRequestor`: a Requestor that sends the handshake only until the server
  answered BOTH or CLIENT (handling NONE by resending with its protocol, as the base
  class does), and records the matches it saw.
* `StatefulResponder`: a Responder that expects a handshake only until it answered BOTH
  or CLIENT, records every call, and answers from a list (OK, FAILED, ERROR:text).
* `serve_stream` (one connection over two streams) and `serve_tcp` (a threaded TCP
  server, one StatefulResponder per connection; the answers list is walked across all
  connections, so a sender's retry on a new connection gets the next answer, and the
  report is rewritten after every call so a test can read it while the server runs).
* Answers besides OK, FAILED and ERROR:text, for the sink's failure tests: STALL (record
  the call, never answer it) and DIE (record the call, then exit the whole process
  without answering, as a killed Flume agent would).

Command line (frames on stdin/stdout, a JSON report written to --report at the end):

  avro_peer.py encode-datums < events.json       # JSON list of hex datums on stdout
  avro_peer.py decode-datums < datums.json       # JSON list of events on stdout
  avro_peer.py client --calls calls.json --report out.json [--protocol NAME] [--deflate]
                      [--connect HOST:PORT]
  avro_peer.py server --report out.json [--answers OK,FAILED,STALL,DIE,...] [--deflate]
                      [--listen HOST:PORT [--calls-report calls.json]]
  avro_peer.py selftest                          # client and server over a socket pair

An event in JSON is {"headers": {"key": "value", ...}, "body": "<hex>"}; a call is
{"message": "append" | "appendBatch", "events": [event, ...]}.
"""

import argparse
import io
import json
import socket
import socketserver
import struct
import sys
import os
import threading
import time
import zlib

import avro.errors
import avro.io
import avro.ipc
import avro.protocol
import avro.schema

# Flume's AvroSourceProtocol (flume.avdl), written out here rather than taken from
# Millrace, so that this peer is independent. Python drops the doc when it renders a
# protocol, so its hash is 707cba5ff90563725bf99ecb99ba0028 either way.
FLUME_PROTOCOL_JSON = json.dumps(
    {
        "protocol": "AvroSourceProtocol",
        "namespace": "org.apache.flume.source.avro",
        "types": [
            {"type": "enum", "name": "Status", "symbols": ["OK", "FAILED", "UNKNOWN"]},
            {
                "type": "record",
                "name": "AvroFlumeEvent",
                "fields": [
                    {"name": "headers", "type": {"type": "map", "values": "string"}},
                    {"name": "body", "type": "bytes"},
                ],
            },
        ],
        "messages": {
            "append": {"request": [{"name": "event", "type": "AvroFlumeEvent"}], "response": "Status"},
            "appendBatch": {
                "request": [{"name": "events", "type": {"type": "array", "items": "AvroFlumeEvent"}}],
                "response": "Status",
            },
        },
    }
)


def protocol_variant(name):
    """The protocol a test client presents: 'flume' (Python's rendering of Flume's, a hash
    Millrace knows), 'renamed' (same layout, another name: an unknown hash), or
    'nullable-headers' (header values ["null", "string"]: another layout on the wire)."""
    spec = json.loads(FLUME_PROTOCOL_JSON)
    if name == "renamed":
        spec["protocol"] = "RenamedSourceProtocol"
    elif name == "nullable-headers":
        spec["types"][1]["fields"][0]["type"]["values"] = ["null", "string"]
    elif name != "flume":
        raise ValueError(f"unknown protocol variant {name}")
    return avro.protocol.parse(json.dumps(spec))


FLUME_PROTOCOL = protocol_variant("flume")
EVENT_SCHEMA = FLUME_PROTOCOL.types_dict["AvroFlumeEvent"]

# Netty framing: all integers signed 32-bit big-endian.
INT = struct.Struct(">i")
FRAME_HEAD = struct.Struct(">ii")
# Java's ByteBufferOutputStream buffer size: requests are cut into buffers of this size.
JAVA_BUFFER_BYTES = 8192
# Refuse frames claiming more than this (a test peer, not a production server).
MAX_FRAME_BYTES = 64 * 1024 * 1024
# How long a STALL answer holds a call: longer than any test waits.
STALL_SECONDS = 3600


def read_exact(reader, size):
    chunks = []
    while size > 0:
        chunk = reader.read(size)
        if not chunk:
            raise EOFError("the stream ended inside a frame")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(reader):
    """Reads one Netty frame; returns (serial, joined buffers), or None at a clean end."""
    head = reader.read(FRAME_HEAD.size)
    if not head:
        return None
    head += read_exact(reader, FRAME_HEAD.size - len(head))
    serial, count = FRAME_HEAD.unpack(head)
    if count <= 0 or count > MAX_FRAME_BYTES // 4:
        raise ValueError(f"frame {serial} has a bad buffer count {count}")
    buffers = []
    total = 0
    for _ in range(count):
        (length,) = INT.unpack(read_exact(reader, INT.size))
        total += length
        if length < 0 or total > MAX_FRAME_BYTES:
            raise ValueError(f"frame {serial} has a bad buffer length {length}")
        buffers.append(read_exact(reader, length))
    return serial, b"".join(buffers)


def write_frame(writer, serial, message, buffer_bytes=JAVA_BUFFER_BYTES):
    """Writes one Netty frame holding `message` cut into buffers of `buffer_bytes`."""
    buffers = [message[at : at + buffer_bytes] for at in range(0, len(message), buffer_bytes)] or [b""]
    out = [FRAME_HEAD.pack(serial, len(buffers))]
    for buffer in buffers:
        out.append(INT.pack(len(buffer)))
        out.append(buffer)
    writer.write(b"".join(out))
    writer.flush()


class DeflateWriter:
    """One zlib stream for everything written; each flush() ends with Z_SYNC_FLUSH."""

    def __init__(self, raw, level=6):
        self.raw = raw
        self.stream = zlib.compressobj(level)

    def write(self, data):
        self.raw.write(self.stream.compress(data))

    def flush(self):
        self.raw.write(self.stream.flush(zlib.Z_SYNC_FLUSH))
        self.raw.flush()


class InflateReader:
    """Reads the peer's single zlib stream as plain bytes."""

    def __init__(self, raw):
        self.raw = raw
        self.stream = zlib.decompressobj()
        self.plain = b""

    def read(self, size):
        while len(self.plain) < size:
            compressed = self.raw.read1(65536) if hasattr(self.raw, "read1") else self.raw.read(1)
            if not compressed:
                break
            self.plain += self.stream.decompress(compressed)
        data, self.plain = self.plain[:size], self.plain[size:]
        return data


def streams(reader, writer, deflate):
    if deflate:
        return InflateReader(reader), DeflateWriter(writer)
    return reader, writer


class NettyTransceiver:
    """Sends each request as one Netty frame with a fresh serial and returns the joined
    buffers of the answer with the same serial."""

    def __init__(self, reader, writer, remote_name="stdio", deflate=False):
        self.reader, self.writer = streams(reader, writer, deflate)
        self.remote_name = remote_name
        self.serial = 0

    @classmethod
    def connect(cls, host, port, deflate=False, timeout_s=30):
        sock = socket.create_connection((host, port), timeout=timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transceiver = cls(sock.makefile("rb"), sock.makefile("wb"), f"{host}:{port}", deflate)
        transceiver.socket = sock
        return transceiver

    def transceive(self, request):
        self.serial += 1
        write_frame(self.writer, self.serial, request)
        answer = read_frame(self.reader)
        if answer is None:
            raise avro.errors.ConnectionClosedException("the server closed the connection")
        serial, message = answer
        if serial != self.serial:
            raise avro.errors.AvroException(f"answer serial {serial}, expected {self.serial}")
        return message

    def close(self):
        sock = getattr(self, "socket", None)
        if sock is not None:
            sock.close()


def peek_match(buffer, offset):
    """The `match` of the HandshakeResponse encoded at `offset` of `buffer`."""
    decoder = avro.io.BinaryDecoder(io.BytesIO(buffer[offset:]))
    return avro.ipc.HANDSHAKE_REQUESTOR_READER.read(decoder)["match"]


class StatefulRequestor(avro.ipc.Requestor):
    """A Requestor for a stateful (Netty) connection: handshakes until the server answers
    BOTH or CLIENT, none afterwards. `handshake_matches` lists the answers seen."""

    def __init__(self, local_protocol, transceiver):
        super().__init__(local_protocol, transceiver)
        self.established = False
        self.handshake_matches = []
        known = avro.ipc.REMOTE_PROTOCOLS.get(transceiver.remote_name)
        self._remote_protocol = known if known is not None else local_protocol

    def request(self, message_name, request_datum):
        buffer = io.BytesIO()
        encoder = avro.io.BinaryEncoder(buffer)
        if not self.established:
            self.write_handshake_request(encoder)
        self.write_call_request(message_name, request_datum, encoder)
        answer = self.transceiver.transceive(buffer.getvalue())
        decoder = avro.io.BinaryDecoder(io.BytesIO(answer))
        if not self.established:
            self.handshake_matches.append(peek_match(answer, 0))
            if not self.read_handshake_response(decoder):
                return self.request(message_name, request_datum)
            self.established = True
        return self.read_call_response(message_name, decoder)


class StatefulResponder(avro.ipc.Responder):
    """A Responder for one stateful connection: reads a handshake until it answered BOTH
    or CLIENT. Records `calls` and `handshake_matches`; answers each call with the next
    entry of `answers` (OK, FAILED or ERROR:text; the last one repeats)."""

    def __init__(self, local_protocol=FLUME_PROTOCOL, answers=("OK",), shared=None):
        super().__init__(local_protocol)
        self.remote_protocol = None
        self.answers = list(answers) or ["OK"]
        self.calls = []
        self.handshake_matches = []
        # A SharedAnswers when several connections walk one answer list.
        self.shared = shared

    def process_handshake(self, decoder, encoder):
        if self.remote_protocol is not None:
            return self.remote_protocol
        start = encoder.writer.tell()
        remote = super().process_handshake(decoder, encoder)
        self.handshake_matches.append(peek_match(encoder.writer.getvalue(), start))
        self.remote_protocol = remote
        return remote

    def invoke(self, local_message, request):
        if local_message.name == "append":
            events = [request["event"]]
        else:
            events = list(request["events"])
        call = {"message": local_message.name, "events": [event_to_json(e) for e in events]}
        self.calls.append(call)
        if self.shared is not None:
            answer = self.shared.next_answer(call)
        else:
            answer = self.answers[min(len(self.calls) - 1, len(self.answers) - 1)]
            call["answer"] = answer
        if answer == "STALL":
            time.sleep(STALL_SECONDS)
        if answer == "DIE":
            os._exit(3)
        if answer.startswith("ERROR:"):
            raise avro.errors.AvroRemoteException(answer[len("ERROR:") :])
        return answer


class SharedAnswers:
    """One answer list walked by every connection of a server (the last answer repeats),
    and the report of every call, rewritten (atomically) after each one."""

    def __init__(self, answers, report_path):
        self.answers = list(answers) or ["OK"]
        self.report_path = report_path
        self.lock = threading.Lock()
        self.calls = []

    def next_answer(self, call):
        with self.lock:
            answer = self.answers[min(len(self.calls), len(self.answers) - 1)]
            call["answer"] = answer
            self.calls.append(call)
            if self.report_path is not None:
                temporary = f"{self.report_path}.tmp"
                write_report(temporary, {"calls": self.calls})
                os.replace(temporary, self.report_path)
            return answer


def serve_stream(responder, reader, writer, deflate=False):
    """Answers requests from `reader` on `writer` until the stream ends."""
    reader, writer = streams(reader, writer, deflate)
    while True:
        frame = read_frame(reader)
        if frame is None:
            return
        serial, request = frame
        write_frame(writer, serial, responder.respond(request))


def serve_tcp(host, port, answers=("OK",), deflate=False, on_connection=None, report_path=None):
    """A threaded TCP server, one StatefulResponder per connection, all walking one
    answer list; returns the server (call serve_forever, and shutdown to stop).
    `on_connection(responder)` is called for each new connection, for the test to
    collect what it received; every call is also written to `report_path` at once."""
    shared = SharedAnswers(answers, report_path)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            responder = StatefulResponder(FLUME_PROTOCOL, answers, shared)
            if on_connection is not None:
                on_connection(responder)
            try:
                serve_stream(responder, self.rfile, self.wfile, deflate)
            except (EOFError, ConnectionError):
                pass

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    return Server((host, port), Handler)


def event_to_json(event):
    return {"headers": dict(event["headers"]), "body": bytes(event["body"]).hex()}


def event_from_json(event):
    return {"headers": dict(event["headers"]), "body": bytes.fromhex(event["body"])}


def encode_datums(events):
    writer = avro.io.DatumWriter(EVENT_SCHEMA)
    datums = []
    for event in events:
        buffer = io.BytesIO()
        writer.write(event_from_json(event), avro.io.BinaryEncoder(buffer))
        datums.append(buffer.getvalue().hex())
    return datums


def decode_datums(datums):
    reader = avro.io.DatumReader(EVENT_SCHEMA)
    events = []
    for datum in datums:
        data = bytes.fromhex(datum)
        buffer = io.BytesIO(data)
        event = reader.read(avro.io.BinaryDecoder(buffer))
        if buffer.tell() != len(data):
            raise ValueError(f"{len(data) - buffer.tell()} bytes left after the datum")
        events.append(event_to_json(event))
    return events


def run_calls(requestor, calls):
    results = []
    for call in calls:
        events = [event_from_json(event) for event in call["events"]]
        try:
            if call["message"] == "append":
                status = requestor.request("append", {"event": events[0]})
            else:
                status = requestor.request("appendBatch", {"events": events})
            results.append({"status": status})
        except avro.errors.AvroRemoteException as error:
            results.append({"error": str(error)})
        except avro.errors.AvroException as error:
            results.append({"failure": str(error)})
            break
    return results


def host_port(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def write_report(path, report):
    with open(path, "w") as out:
        json.dump(report, out)


def command_client(args):
    with open(args.calls) as calls_file:
        calls = json.load(calls_file)
    protocol = protocol_variant(args.protocol)
    if args.connect:
        transceiver = NettyTransceiver.connect(*host_port(args.connect), deflate=args.deflate)
    else:
        transceiver = NettyTransceiver(sys.stdin.buffer, sys.stdout.buffer, deflate=args.deflate)
    requestor = StatefulRequestor(protocol, transceiver)
    results = run_calls(requestor, calls)
    transceiver.close()
    write_report(
        args.report,
        {"results": results, "handshake_matches": requestor.handshake_matches, "client_hash": protocol.md5.hex()},
    )


def command_server(args):
    answers = args.answers.split(",")
    if args.listen:
        responders = []
        calls_report = args.calls_report
        server = serve_tcp(*host_port(args.listen), answers, args.deflate, responders.append, calls_report)
        print(f"listening {server.server_address[0]}:{server.server_address[1]}", flush=True)
        try:
            server.serve_forever()
        finally:
            write_report(args.report, {"connections": [responder_report(r) for r in responders]})
        return
    responder = StatefulResponder(FLUME_PROTOCOL, answers)
    try:
        serve_stream(responder, sys.stdin.buffer, sys.stdout.buffer, args.deflate)
    finally:
        write_report(args.report, responder_report(responder))


def responder_report(responder):
    return {"calls": responder.calls, "handshake_matches": responder.handshake_matches}


def command_selftest(_args):
    """Our client helper against our server helper over a socket pair, with and without
    deflate: proves the helper itself before Millrace is judged by it."""
    for deflate in (False, True):
        client_end, server_end = socket.socketpair()
        responder = StatefulResponder(FLUME_PROTOCOL, ["OK", "FAILED", "OK"])
        thread = threading.Thread(
            target=serve_stream,
            args=(responder, server_end.makefile("rb"), server_end.makefile("wb"), deflate),
            daemon=True,
        )
        thread.start()
        transceiver = NettyTransceiver(client_end.makefile("rb"), client_end.makefile("wb"), "pair", deflate)
        requestor = StatefulRequestor(protocol_variant("renamed"), transceiver)
        event = {"headers": {"k": "v"}, "body": b"\x00\xff"}
        results = [
            requestor.request("append", {"event": event}),
            requestor.request("appendBatch", {"events": [event, event]}),
            requestor.request("appendBatch", {"events": []}),
        ]
        client_end.shutdown(socket.SHUT_WR)
        thread.join(10)
        expected_calls = [1, 2, 0]
        assert results == ["OK", "FAILED", "OK"], results
        assert requestor.handshake_matches == ["NONE", "BOTH"], requestor.handshake_matches
        assert [len(call["events"]) for call in responder.calls] == expected_calls, responder.calls
        assert responder.handshake_matches == ["NONE", "BOTH"], responder.handshake_matches
    print("selftest passed")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("encode-datums")
    commands.add_parser("decode-datums")
    client = commands.add_parser("client")
    client.add_argument("--calls", required=True)
    client.add_argument("--report", required=True)
    client.add_argument("--protocol", default="flume", choices=["flume", "renamed", "nullable-headers"])
    client.add_argument("--deflate", action="store_true")
    client.add_argument("--connect")
    server = commands.add_parser("server")
    server.add_argument("--report", required=True)
    server.add_argument("--answers", default="OK")
    server.add_argument("--deflate", action="store_true")
    server.add_argument("--listen")
    server.add_argument("--calls-report", help="with --listen: every call and its answer, rewritten after each call")
    commands.add_parser("selftest")
    args = parser.parse_args()
    if args.command == "encode-datums":
        json.dump(encode_datums(json.load(sys.stdin)), sys.stdout)
    elif args.command == "decode-datums":
        json.dump(decode_datums(json.load(sys.stdin)), sys.stdout)
    elif args.command == "client":
        command_client(args)
    elif args.command == "server":
        command_server(args)
    else:
        command_selftest(args)


if __name__ == "__main__":
    main()
