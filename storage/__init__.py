"""MongoDB persistence: the client's lifecycle (an embedded server when no MONGODB_URI is set),
one store per collection, their indexes and record models. Knows nothing of Teams or HTTP."""
