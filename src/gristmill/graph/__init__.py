"""The resolved graph of a recorded workflow: node ids, edges, identities, renderings."""
