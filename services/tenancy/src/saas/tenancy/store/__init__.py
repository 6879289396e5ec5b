"""Tenancy's tables: `public`'s (tenants and their workflows) and a tenant schema's."""
