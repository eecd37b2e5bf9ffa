"""``GET /v1/models`` (and ``/v1/models/{name}``): the registered models of the API key's
workspace and its published bots, in OpenAI's list format, so ``client.models.list()`` works
unchanged. A user-role key (and a key limited to one bot) sees bots only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from backend.accounts.actor import Actor, Role
from backend.api import agent_serving
from backend.api.auth import error_body, require_actor
from backend.api.schemas import ModelCard, ModelList, responses
from backend.services import models as models_service

router = APIRouter()


def _card(m: models_service.ModelView) -> dict[str, Any]:
    return {
        "id": m.name,
        "object": "model",
        "created": int(m.created_at.timestamp()),
        "owned_by": f"workspace-{m.workspace_id}",
        "kind": m.kind,
        "capabilities": list(m.capabilities),
    }


@router.get("/v1/models", response_model=ModelList, responses=responses(401, 503),
            summary="The models of the key's workspace (and its published bots)")
async def list_models(request: Request, actor: Actor = Depends(require_actor)) -> dict[str, Any]:
    rows: list[models_service.ModelView] = []
    # a key for one bot sees only that bot; a user-role key sees the published bots only
    if actor.has_role(Role.builder) and not await agent_serving.limited_to_agent(request):
        rows = await run_in_threadpool(lambda: models_service.list_models(actor=actor))
    bots = [agent_serving.agent_card(a) for a in await agent_serving.visible_agents(request, actor)]
    return {"object": "list", "data": [_card(m) for m in rows] + bots}


@router.get("/v1/models/{name:path}", response_model=None, summary="One model (or published bot)",
            responses={200: {"model": ModelCard, "description": "The model."},
                       **responses(401, 404, 503)})
async def get_model(name: str, request: Request, actor: Actor = Depends(require_actor)) -> Any:
    bot = next((a for a in await agent_serving.visible_agents(request, actor) if a.name == name),
               None)
    if bot is not None:  # a published agent
        return agent_serving.agent_card(bot)
    try:
        if not actor.has_role(Role.builder) or await agent_serving.limited_to_agent(request):
            raise models_service.ModelNotFound(name)
        # by name in the key's workspace only: in the API an id is not another spelling
        m = await run_in_threadpool(lambda: models_service.get_model(actor=actor, model=name,
                                                                     name_only=True))
    except models_service.ModelNotFound:
        return JSONResponse(status_code=404, content=error_body(
            f"The model {name!r} does not exist in this key's workspace.",
            type_="invalid_request_error", code="model_not_found"))
    return _card(m)
