"""The HTTP facade: translates HTTP/JSON and Server-Sent Events to and from the gRPC core."""
