"""Temporal workflows and activities of tenancy, run by `saas tenancy worker`."""
