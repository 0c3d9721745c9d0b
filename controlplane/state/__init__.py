"""The state database: its migrations, its schema name (schema.py) and one store per concept: rollout
events, rollback locks, rollouts and their decisions, counter snapshots, shadow samples, cutover
journals. Each store is the only place its tables' SQL lives. The router reads locks and rollouts, and writes shadow
samples, with the same SQL text and row mapping (async psycopg there, sync here); nothing the
router imports from here imports aiohttp."""
