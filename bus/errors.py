"""Every error the bus raises, by name, so callers can tell them apart."""


class BusError(Exception):
    """Base of all bus errors."""


class UnknownTopic(BusError):
    """A topic that is not in bus/topics.py."""


class PayloadError(BusError):
    """A payload that does not match the topic table."""


class NotOwner(BusError):
    """A node publishing a topic that the table gives to another node."""


class MalformedMessage(BusError):
    """Bytes on the wire that do not decode to a valid envelope."""

    def __init__(self, reason: str, topic: str = "<undecodable>"):
        super().__init__(f"{topic}: {reason}")
        self.reason = reason
        self.topic = topic


class BusTimeout(BusError):
    """A wait on the bus (readiness, a reply) that ran past its deadline."""


class RequestTimeout(BusTimeout):
    """No reply to a request before its deadline."""


class RequestFailed(BusError):
    """The server answered a request with an error."""


class RuntimeDirError(BusError):
    """The runtime directory is missing, unsafe, or its paths are too long for ipc://."""


class BusNotRunning(BusError):
    """No broker serves the runtime directory: lensos is not running there."""

    def __init__(self, directory):
        super().__init__(f"lensos is not running (no broker on {directory}); start it with `make run` or `lens up`")
        self.directory = directory


class BrokerRunning(BusError):
    """Another broker already holds this runtime directory."""


class RequestRefused(BusError):
    """Raised by a request handler to answer with an error; the requester gets RequestFailed."""


class KeyMissing(BusError):
    """A process's CURVE key, or the broker's public key, is missing or unreadable."""
