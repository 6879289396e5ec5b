"""Identity's tables (schema `identity`) and the queries that are more than one line."""
