"""Public HTTP routes, one module per area.

Each module's router carries the full prefix itself (rather than being nested under an API
router) so that a request's matched route is the whole template, e.g. `/api/v1/status`, which is
what metrics are labelled with.
"""

API_PREFIX = "/api/v1"
