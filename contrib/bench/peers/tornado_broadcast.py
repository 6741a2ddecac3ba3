#!/usr/bin/python3
"""The Tornado WebSocket broadcast server of the classic tutorial, as a
benchmark peer for natter (contrib/bench/run): a WebSocketHandler keeping a
set of connections and writing each received message to all of them.

    tornado_broadcast.py PORT      (listens on 127.0.0.1:PORT, path /ws)
"""
import resource
import sys

import tornado.ioloop
import tornado.web
import tornado.websocket


class Broadcast(tornado.websocket.WebSocketHandler):
    clients = set()

    def check_origin(self, origin):
        return True

    def open(self):
        Broadcast.clients.add(self)

    def on_close(self):
        Broadcast.clients.discard(self)

    def on_message(self, message):
        for client in list(Broadcast.clients):
            try:
                client.write_message(message)
            except tornado.websocket.WebSocketClosedError:
                pass


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8888
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    app = tornado.web.Application([(r"/ws", Broadcast)])
    app.listen(port, address="127.0.0.1", backlog=8192)
    print("tornado broadcast listening port=%d" % port, flush=True)
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
