from ninja import NinjaAPI

from webapp.api import errors
from webapp.api.auth import AUTH
from webapp.api.runs import router as runs_router

api = NinjaAPI(
    title="Ponder API",
    version="1",
    description="Runs, rollouts and metrics of reasoning-model training. Auth: `Authorization: Bearer <token>`.",
    auth=AUTH,
    parser=errors.StrictJsonParser(),
    openapi_url="/openapi.json",
    docs_url="/docs",
    urls_namespace="api",
)
errors.install(api)
api.add_router("/", runs_router)
