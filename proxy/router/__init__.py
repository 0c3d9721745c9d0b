"""The dual-stack router: the data plane that routes each tenant to v1 or v2."""
