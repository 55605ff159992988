"""The bare FastAPI app ``serve.py`` compares the model server with: the same model and scorer, no KServe.

It reads ``BARE_MODEL_DIR`` (a ``TrainedModel`` folder) and answers ``POST /v1/models/m:predict``
with ``{"predictions": [...]}``; it validates nothing. Run by ``serve.py`` through uvicorn.
"""

import os
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from components.serve.scoring import RowScorer
from components.train.model import TrainedModel

_model = TrainedModel.load(Path(os.environ["BARE_MODEL_DIR"]))
_scorer = RowScorer(_model)
_text = set(_model.task.categorical)
app = FastAPI()


@app.post("/v1/models/{name}:predict")
async def predict(name: str, request: Request) -> JSONResponse:
    instances: list[dict[str, Any]] = (await request.json())["instances"]
    columns = {
        c: [i[c] for i in instances] if c in _text else np.array([i[c] for i in instances], dtype="float64")
        for c in instances[0]
    }
    return JSONResponse({"predictions": _scorer.score(columns, len(instances)).tolist()})
