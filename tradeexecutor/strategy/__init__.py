"""Strategies: the author-facing API, typed parameters, the cycle context and the module loader."""
