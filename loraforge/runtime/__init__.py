"""The llama.cpp runtime: server lifecycle and the HTTP client every model call goes through."""

from loraforge.runtime.client import ChatResult, LlamaClient, Timeouts
from loraforge.runtime.config import ServerConfig
from loraforge.runtime.protocol import ChatClient
from loraforge.runtime.server import BinaryServer, EmbeddedServer, ExternalServer, LlamaServer, make_server

__all__ = [
    "BinaryServer",
    "ChatClient",
    "ChatResult",
    "EmbeddedServer",
    "ExternalServer",
    "LlamaClient",
    "LlamaServer",
    "ServerConfig",
    "Timeouts",
    "make_server",
]
