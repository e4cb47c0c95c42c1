#!/usr/bin/env python3
"""A registry quirk proxy for bench/registry.sh: listens on 127.0.0.1, forwards to a registry on
127.0.0.1:UPSTREAM, one exchange per connection, bodies streamed in 1 MiB pieces.

    quirk_proxy.py UPSTREAM MODE        prints the port it listens on, then serves until killed

MODE:
    plain     forward everything (the cost of the proxy alone)
    gar       refuse a PATCH carrying Content-Range with 400 UNSUPPORTED, as Google Artifact
              Registry does (the client must send each blob in one request)
    noput     refuse a PUT carrying a blob (Content-Length > 0) with 405 UNSUPPORTED, after reading
              it (the client must send large blobs some other way: manifold's chunks)
    harbor    refuse a cross-repository mount (POST ...?mount=) with 401, as Harbor does for a
              project the user cannot read from
"""
import socket
import socketserver
import sys

PIECE = 1 << 20


def read_head(f):
    lines = []
    while True:
        line = f.readline(65536)
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            break
        lines.append(line.rstrip(b"\r\n").decode("latin-1"))
    method, target, _ = lines[0].split(" ", 2)
    headers = []
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers.append((k.strip(), v.strip()))
    return method, target, headers


def header(headers, name):
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def refuse(wfile, status, code):
    body = ('{"errors":[{"code":"%s","message":"refused by the bench quirk proxy"}]}' % code).encode()
    wfile.write(
        b"HTTP/1.1 %d Refused\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n" % (status, len(body)) + body
    )
    wfile.flush()


def copy_exact(src, dst, n):
    buf = bytearray(PIECE)
    view = memoryview(buf)
    while n > 0:
        k = src.readinto(view[: min(n, PIECE)])
        if not k:
            raise ConnectionError("body ended early")
        dst.sendall(view[:k])
        n -= k


def copy_chunked(src, dst):
    # Transfer-Encoding: chunked, relayed as it is.
    while True:
        size_line = src.readline(1024)
        dst.sendall(size_line)
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            while True:
                trailer = src.readline(65536)
                dst.sendall(trailer)
                if trailer in (b"\r\n", b"\n", b""):
                    return
        copy_exact(src, dst, size)
        dst.sendall(src.readline(16))


class Handler(socketserver.StreamRequestHandler):
    rbufsize = PIECE

    def handle(self):
        # manifold tries HTTPS first on a loopback registry: a TLS ClientHello is closed at once
        # (as the registry itself would refuse it), not left waiting for a line that never comes.
        if self.rfile.peek(1)[:1] == b"\x16":
            return
        head = read_head(self.rfile)
        if head is None:
            return
        method, target, headers = head
        mode = self.server.mode
        length = int(header(headers, "content-length") or 0)
        chunked = (header(headers, "transfer-encoding") or "").lower() == "chunked"
        if mode == "gar" and method == "PATCH" and header(headers, "content-range"):
            self.rfile.read(length)
            return refuse(self.wfile, 400, "UNSUPPORTED")
        if mode == "noput" and method == "PUT" and "/blobs/uploads/" in target and length > 0:
            self.rfile.read(length)
            return refuse(self.wfile, 405, "UNSUPPORTED")
        if mode == "harbor" and method == "POST" and "mount=" in target:
            self.rfile.read(length)
            return refuse(self.wfile, 401, "UNAUTHORIZED")
        up = socket.create_connection(("127.0.0.1", self.server.upstream))
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        out = ["%s %s HTTP/1.1" % (method, target)]
        out += ["%s: %s" % (k, v) for k, v in headers if k.lower() != "connection"]
        up.sendall(("\r\n".join(out) + "\r\nConnection: close\r\n\r\n").encode("latin-1"))
        if chunked:
            copy_chunked(self.rfile, up)
        else:
            copy_exact(self.rfile, up, length)
        # The answer, head and body, as it comes until the registry closes.
        buf = bytearray(PIECE)
        view = memoryview(buf)
        while True:
            k = up.recv_into(view)
            if not k:
                break
            self.connection.sendall(view[:k])
        up.close()


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    upstream, mode = int(sys.argv[1]), sys.argv[2]
    assert mode in ("plain", "gar", "noput", "harbor"), mode
    server = Server(("127.0.0.1", 0), Handler)
    server.upstream, server.mode = upstream, mode
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
