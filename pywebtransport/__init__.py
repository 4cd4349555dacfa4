"""WebTransport over HTTP/3: sessions, streams, datagrams and the application API.

Client::

    async with WebTransportClient(ClientConfig(server_certificate_hashes=[h])) as client:
        session = await client.connect("https://127.0.0.1:4433/echo")
        stream = await session.create_bidirectional_stream()
        await stream.write_all(b"hello")
        print(await stream.read_all())

Application server::

    app = ServerApp(config=ServerConfig(certfile="cert.pem", keyfile="key.pem"))

    @app.route("/echo")
    async def echo(session: WebTransportSession) -> None:
        async for stream in session.incoming_bidirectional_streams():
            await stream.write_all(await stream.read_all())

    app.run(host="127.0.0.1", port=4433)

Low-level server::

    server = WebTransportServer(ServerConfig(certfile="cert.pem", keyfile="key.pem"))
    await server.listen()
    async for request in server.incoming_sessions():
        session = await request.accept()
"""

from pywebtransport.app import ServerApp
from pywebtransport.client import WebTransportClient
from pywebtransport.clients import Backoff, ClientEvent, ClientFleet, FleetStats, ReconnectingClient
from pywebtransport.config import ClientConfig, ConfigurationError, ServerConfig
from pywebtransport.events import Event, EventEmitter, EventType
from pywebtransport.exceptions import (
    CertificateError,
    ConnectionFailed,
    ConnectTimeout,
    DatagramTooLarge,
    FlowControlError,
    ProtocolError,
    SessionClosed,
    SessionRejected,
    StopReceiving,
    StreamClosed,
    StreamError,
    StreamReset,
    WebTransportError,
)
from pywebtransport.middleware import (
    BearerAuth,
    CustomAuth,
    OriginCheck,
    RateLimit,
    Rejection,
    RequestLogger,
    SessionLimit,
    compose,
)
from pywebtransport.serializers import (
    JSONSerializer,
    MessageTooLarge,
    MessageTypeMismatch,
    MsgPackSerializer,
    ProtobufSerializer,
    SerializationError,
    TruncatedMessage,
    UnknownMessageType,
)
from pywebtransport.server import SessionRequest, WebTransportServer
from pywebtransport.session import WebTransportSession
from pywebtransport.stream import (
    WebTransportReceiveStream,
    WebTransportSendStream,
    WebTransportStream,
)
from pywebtransport.structured import (
    MessageRegistry,
    StructuredDatagramTransport,
    StructuredStream,
    TypedSerializer,
)

__version__ = "0.1.0"

__all__ = [
    "Backoff",
    "BearerAuth",
    "CertificateError",
    "ClientConfig",
    "ClientEvent",
    "ClientFleet",
    "ConfigurationError",
    "ConnectTimeout",
    "ConnectionFailed",
    "CustomAuth",
    "DatagramTooLarge",
    "Event",
    "EventEmitter",
    "EventType",
    "FleetStats",
    "FlowControlError",
    "JSONSerializer",
    "MessageRegistry",
    "MessageTooLarge",
    "MessageTypeMismatch",
    "MsgPackSerializer",
    "OriginCheck",
    "ProtobufSerializer",
    "ProtocolError",
    "RateLimit",
    "ReconnectingClient",
    "Rejection",
    "RequestLogger",
    "SerializationError",
    "ServerApp",
    "ServerConfig",
    "SessionClosed",
    "SessionLimit",
    "SessionRejected",
    "SessionRequest",
    "StopReceiving",
    "StreamClosed",
    "StreamError",
    "StreamReset",
    "StructuredDatagramTransport",
    "StructuredStream",
    "TruncatedMessage",
    "TypedSerializer",
    "UnknownMessageType",
    "WebTransportClient",
    "WebTransportError",
    "WebTransportReceiveStream",
    "WebTransportSendStream",
    "WebTransportServer",
    "WebTransportSession",
    "WebTransportStream",
    "__version__",
    "compose",
]
