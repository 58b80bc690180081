"""PostgreSQL plumbing shared by the projector's store and the search index: store URLs
(:mod:`parley.pg.url`) and versioned schema migrations (:mod:`parley.pg.migrate`).

Nothing is re-exported here: :mod:`parley.pg.url` is imported by every process (settings
validation), :mod:`parley.pg.migrate` loads asyncpg, which only PostgreSQL set-ups need.
"""
