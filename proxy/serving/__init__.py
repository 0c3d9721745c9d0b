"""What the router and the v2 service share as servers: start-up, the worker supervisor, owned tasks."""
