"""A minimal broadcast chat: everyone who connects hears everyone else.

Run it with ``python examples/chat/app.py run`` and send ``{"shout": {"text": "hi"}}``
from any WebSocket client; every connected client receives
``{"shout": {"from": "<sender pk>", "text": "hi"}}``.
"""

from lexicons import Response, Server

app = Server()
app.channel("Public")


@app.on_connect
def join(ws, sv):
    sv.channels["Public"].subscribe(ws.pk)


@app.signal
def shout(ws, text: str):
    return Response({"from": ws.pk, "text": text}, ["Public"])


if __name__ == "__main__":
    app.run()
