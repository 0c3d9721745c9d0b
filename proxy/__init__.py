"""The data plane: the two servers in the request path (the router and the v2 payment service)."""
