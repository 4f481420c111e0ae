"""The gRPC surface of the core: the server, the error table applied to every call, and one thin
servicer per service (decode, call the domain, encode)."""
