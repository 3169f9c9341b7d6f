"""The JSON-RPC server on the agent's unix socket (asyncio, one loop thread).

Each connection has its own coroutine: it reads bytes, cuts them into
requests (:class:`jsonrpc.FrameSplitter`), answers them in order and waits
for the reply to drain before reading on.  Engine work runs in the
dispatcher's worker thread, so a slow or dead client only ever holds up its
own connection; a client that leaves replies unread for ``send_timeout``
seconds is dropped.
"""

import asyncio
import grp
import logging
import os
import socket
import stat
import tempfile

from spdk_backend.agent import jsonrpc

LOG = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
WRITE_HIGH_WATER = 256 * 1024


class RpcServer:
    def __init__(self, dispatcher, path, mode=0o660, group=None, send_timeout=30.0,
                 max_request=jsonrpc.MAX_REQUEST_BYTES, listen_fd=None):
        self.dispatcher = dispatcher
        self.path = path
        # A listening socket handed over by the previous agent process
        # (agent/handoff.py): served as it is, already at its path.
        self.listen_fd = listen_fd
        self._detached = False
        self.mode = mode
        self.group = group
        self.send_timeout = send_timeout
        self.max_request = max_request
        self._server = None
        self._conns = set()

    # ---- lifecycle ----

    async def start(self):
        if self.listen_fd is not None:
            sock = socket.socket(fileno=self.listen_fd)
            self.listen_fd = None
            try:
                sock.setblocking(False)
                self._server = await asyncio.start_unix_server(self._serve, sock=sock)
            except BaseException:
                sock.close()
                raise
            LOG.info("serving JSON-RPC on %s (handed over)", self.path)
            return
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, mode=0o755, exist_ok=True)
        _remove_stale_socket(self.path)
        gid = _resolve_group(self.group) if self.group else None
        # Bind in a private directory, set owner and mode there, then link
        # into place: the socket appears at its path with its final access,
        # so nobody connects (or stats it) in between, and no process-wide
        # umask is touched while other threads create files.  link() refuses
        # to replace what appeared at the path meanwhile, as bind() would.
        private = tempfile.mkdtemp(prefix=".rpc-", dir=directory)
        staged = os.path.join(private, "s")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        linked = False
        try:
            sock.bind(staged)
            if gid is not None:
                os.chown(staged, -1, gid)
            os.chmod(staged, self.mode)
            os.link(staged, self.path)
            linked = True
            self._server = await asyncio.start_unix_server(self._serve, sock=sock)
        except BaseException:
            sock.close()
            if linked:
                os.unlink(self.path)
            raise
        finally:
            try:
                os.unlink(staged)
            except FileNotFoundError:
                pass
            os.rmdir(private)
        LOG.info("serving JSON-RPC on %s (mode %04o%s)", self.path, self.mode,
                 ", group %s" % self.group if self.group else "")

    def detach(self):
        """A copy of the listening socket for the next process; close()
        then leaves the socket's file in place.  Connections waiting to be
        accepted stay queued on it."""
        fd = os.dup(self._server.sockets[0].fileno())
        self._detached = True
        return fd

    def stop_accepting(self):
        """Accept no new connection (those waiting stay queued on the socket
        for whoever listens next); connections already open go on."""
        if self._server is not None:
            self._server.close()

    async def close(self):
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5)
            except asyncio.TimeoutError:
                pass
            self._server = None
        if self._detached:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    # ---- one connection ----

    async def _serve(self, reader, writer):
        task = asyncio.current_task()
        self._conns.add(task)
        writer.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        splitter = jsonrpc.FrameSplitter(self.max_request)
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    return
                for item in splitter.feed(data):
                    if not isinstance(item, jsonrpc.ParseError):
                        try:
                            item = jsonrpc.loads(item)
                        except jsonrpc.ParseError as exc:
                            item = exc
                    if isinstance(item, jsonrpc.ParseError):
                        # As SPDK: no resync point in a JSON stream, so answer
                        # and close.
                        LOG.warning("closing RPC connection after a parse error: %s",
                                    item.message)
                        await self._send(writer, jsonrpc.error_reply(
                            None, item.code, item.message))
                        return
                    reply = await self.handle_obj(item)
                    if reply is not None and not await self._send(writer, reply):
                        return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._conns.discard(task)
            # close() flushes what is buffered (a final parse error reply);
            # a peer that stopped reading was already aborted by _send.
            writer.close()

    async def _send(self, writer, reply):
        try:
            data = jsonrpc.dumps(reply)
        except (TypeError, ValueError) as exc:
            LOG.error("reply not serializable: %s", exc)
            data = jsonrpc.dumps(jsonrpc.error_reply(
                reply.get("id") if isinstance(reply, dict) else None,
                jsonrpc.INTERNAL_ERROR, "Internal error: reply not serializable"))
        if writer.is_closing():
            return False
        writer.write(data)
        try:
            await asyncio.wait_for(writer.drain(), self.send_timeout)
        except asyncio.TimeoutError:
            LOG.warning("RPC client left %d bytes of replies unread for %ss; dropping it",
                        writer.transport.get_write_buffer_size(), self.send_timeout)
            writer.transport.abort()
            return False
        except ConnectionError:
            return False
        return True

    # ---- requests ----

    async def handle_obj(self, obj):
        """The reply (dict or list) to one decoded request or batch, or None."""
        if isinstance(obj, list):
            if not obj:
                return jsonrpc.error_reply(None, jsonrpc.INVALID_REQUEST,
                                           "Invalid request: empty batch")
            replies = []
            for one in obj:
                reply = await self.handle_one(one)
                if reply is not None:
                    replies.append(reply)
            return replies or None
        return await self.handle_one(obj)

    async def handle_one(self, obj):
        try:
            req = jsonrpc.parse_request(obj)
        except jsonrpc.RpcError as exc:
            return jsonrpc.error_reply(exc.req_id, exc.code, exc.message)
        LOG.debug("RPC %s %s", req.method, req.params)
        try:
            result = await self.dispatcher.call(req.method, req.params)
        except jsonrpc.RpcError as exc:
            LOG.info("RPC %s failed: %d %s", req.method, exc.code, exc.message)
            return None if req.notification else jsonrpc.error_reply(
                req.req_id, exc.code, exc.message)
        except Exception as exc:  # a bug: answer, log, keep serving
            LOG.exception("RPC %s crashed", req.method)
            return None if req.notification else jsonrpc.error_reply(
                req.req_id, jsonrpc.INTERNAL_ERROR, "Internal error: %s" % exc)
        return None if req.notification else jsonrpc.result_reply(req.req_id, result)


def _resolve_group(group):
    try:
        return int(group)
    except ValueError:
        pass
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError("rpc_socket_group %r is not a known group" % group) from None


def _remove_stale_socket(path):
    """Remove a socket left by a dead agent (the state_dir lock proves it dead)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError("rpc_socket %s exists and is not a socket; refusing to "
                              "replace it" % path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1)
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise FileExistsError("rpc_socket %s is in use by another process" % path)
