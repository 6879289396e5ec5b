"""Rate limiting at the gateway: one atomic Redis round trip per request, GCRA on Redis's clock,
an in-process fallback while Redis is away, and the IETF RateLimit header fields."""
