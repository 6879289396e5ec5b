from saas.common.migrations import run_owner_env

run_owner_env()
