from saas.common.migrations import run_tenant_env

run_tenant_env()
