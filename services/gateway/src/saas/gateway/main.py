"""Wires the gateway: the public FastAPI app on top of the process frame."""

from __future__ import annotations

from fastapi.middleware.cors import CORSMiddleware

from saas.common.process import ServiceProcess
from saas.gateway import __version__
from saas.gateway.cli import GATEWAY
from saas.gateway.middleware import RequestContextMiddleware
from saas.gateway.problems import install_problem_handlers
from saas.gateway.routes import auth, keys, members, projects, status, tenants, users
from saas.gateway.settings import GatewaySettings


def build(settings: GatewaySettings | None = None) -> ServiceProcess:
    settings = settings or GatewaySettings.load()
    process = ServiceProcess(GATEWAY, __version__, settings)
    app = process.create_app(title="SaaS API", version=__version__, debug=settings.debug)
    for routes in (status, auth, users, tenants, members, projects, keys):
        app.include_router(routes.router)
    install_problem_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-Id"],
        )
    app.add_middleware(RequestContextMiddleware, metrics=process.metrics)
    return process
