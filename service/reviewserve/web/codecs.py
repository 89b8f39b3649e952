"""Wire formats around the one predictor: the seed ``{"review"}`` / ``{"reviews"}`` JSON and Open Inference V2.

Each codec turns a parsed JSON body into a list of texts and predictions back into a response body.
Shape and type problems raise :class:`APIError` (422) naming the field.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from flask import Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError
from werkzeug.exceptions import ClientDisconnected

from reviewserve.model import InvalidText, Prediction, Predictor, TextTooLong
from reviewserve.web.errors import APIError


def read_json(request: Request) -> Any:
    """The request body as JSON: 415 for a non-JSON content type, 400 if it does not parse."""
    # No Content-Type is read as JSON (V2 clients such as tritonclient send none); a non-JSON one is refused.
    if request.mimetype and not request.is_json:
        raise APIError(
            415, "unsupported_media_type", f"Content-Type must be application/json, got {request.mimetype!r}"
        )
    if "Inference-Header-Content-Length" in request.headers:
        raise APIError(
            415,
            "unsupported_media_type",
            "the V2 binary tensor data extension is not supported: send tensors as JSON (binary_data=False)",
        )
    try:
        raw = request.get_data(cache=True)  # bounded by MAX_CONTENT_LENGTH -> 413
    except ClientDisconnected:
        # Fewer bytes than Content-Length: the client closed, or sent nothing for KEEPALIVE seconds.
        raise APIError(
            400, "incomplete_body", "the request body ended or stalled before Content-Length bytes arrived"
        ) from None
    try:
        return json.loads(raw.decode("utf-8"))  # RFC 8259: JSON on the wire is UTF-8
    except UnicodeDecodeError as exc:
        raise APIError(400, "invalid_json", f"request body is not UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        raise APIError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        # json refuses nesting deeper than the interpreter's recursion limit (about 1,000 levels).
        raise APIError(400, "invalid_json", "request body is nested too deeply") from None


def _pydantic_422(exc: ValidationError) -> APIError:
    problems = [
        {"field": ".".join(str(p) for p in err["loc"]) or "body", "problem": err["msg"]} for err in exc.errors()
    ]
    message = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
    return APIError(422, "validation_error", message, details=problems)


def score(predictor: Predictor, texts: list[str]) -> list[Prediction]:
    """Run the predictor; its text rules answer as API errors: too long -> 413, empty -> 422."""
    try:
        return predictor.predict(texts)
    except TextTooLong as exc:
        raise APIError(413, exc.code, str(exc)) from None
    except InvalidText as exc:
        raise APIError(422, exc.code, str(exc)) from None


# --- seed format -------------------------------------------------------------------------------


class SingleReview(BaseModel):
    """``{"review": "text"}``: the seed contract."""

    model_config = ConfigDict(extra="ignore", title="SingleReview")
    review: StrictStr = Field(description="The review text.")


class ReviewList(BaseModel):
    """``{"reviews": ["text", ...]}``: several reviews, answered in order."""

    model_config = ConfigDict(extra="ignore", title="ReviewList")
    reviews: list[StrictStr] = Field(min_length=1, description="Review texts.")


def decode_seed(body: Any, max_reviews: int) -> tuple[list[str], bool]:
    """Texts from a seed body and whether it was the single-review form."""
    if not isinstance(body, dict):
        raise APIError(422, "validation_error", "request body must be a JSON object with 'review' or 'reviews'")
    if "review" in body and "reviews" in body:
        raise APIError(422, "validation_error", "send either 'review' or 'reviews', not both")
    try:
        if "reviews" in body:
            many = ReviewList.model_validate(body)
        else:
            return [SingleReview.model_validate(body).review], True
    except ValidationError as exc:
        raise _pydantic_422(exc) from None
    if len(many.reviews) > max_reviews:
        raise APIError(422, "too_many_reviews", f"reviews has {len(many.reviews)} items; the limit is {max_reviews}")
    return many.reviews, False


def _seed_item(prediction: Prediction) -> dict[str, Any]:
    return {
        "prediction": prediction.label,
        "probability": round(prediction.probability, 6),
        "positive_probability": round(prediction.positive_probability, 6),
    }


def encode_seed(predictions: list[Prediction], single: bool, predictor: Predictor) -> dict[str, Any]:
    """Response body: one result at the top level for ``review``, a list for ``reviews``."""
    model = {"name": predictor.name, "version": predictor.version}
    if single:
        return {**_seed_item(predictions[0]), "model": model}
    return {"predictions": [_seed_item(p) for p in predictions], "model": model}


# --- Open Inference Protocol V2 ------------------------------------------------------------------

OUTPUTS = ("label", "probability", "positive_probability")
INPUT_NAME = "review"  # the one input the model metadata names


class InferInput(BaseModel):
    """One V2 input tensor; reviews come as a ``BYTES`` tensor of strings."""

    model_config = ConfigDict(extra="ignore")
    name: StrictStr
    shape: list[int] = Field(min_length=1)
    datatype: Literal["BYTES"]
    data: list[StrictStr] = Field(min_length=1)


class RequestedOutput(BaseModel):
    """A requested V2 output by name."""

    model_config = ConfigDict(extra="ignore")
    name: Literal["label", "probability", "positive_probability"]


class InferRequest(BaseModel):
    """V2 inference request body."""

    model_config = ConfigDict(extra="ignore")
    id: StrictStr | None = None
    inputs: list[InferInput] = Field(min_length=1, max_length=1)
    outputs: list[RequestedOutput] | None = None


def decode_v2(body: Any, max_reviews: int) -> InferRequest:
    """Parse and check a V2 request: one BYTES input whose shape matches its data."""
    try:
        request = InferRequest.model_validate(body)
    except ValidationError as exc:
        raise _pydantic_422(exc) from None
    tensor = request.inputs[0]
    if tensor.name != INPUT_NAME:
        # 400, not 422: the body is well formed but names an input this model does not have (see its metadata).
        raise APIError(
            400,
            "invalid_input",
            f"inputs.0.name {tensor.name!r} is not an input of this model; its input is {INPUT_NAME!r}",
        )
    if any(d < 0 for d in tensor.shape) or math.prod(tensor.shape) != len(tensor.data):
        raise APIError(
            422,
            "validation_error",
            f"inputs.0.shape {tensor.shape} does not match {len(tensor.data)} data element(s)",
        )
    if len(tensor.data) > max_reviews:
        raise APIError(
            422, "too_many_reviews", f"inputs.0.data has {len(tensor.data)} items; the limit is {max_reviews}"
        )
    return request


def encode_v2(request: InferRequest, predictions: list[Prediction], predictor: Predictor) -> dict[str, Any]:
    """V2 inference response with label / probability / positive_probability outputs."""
    n = len(predictions)
    tensors = {
        "label": {"name": "label", "datatype": "BYTES", "shape": [n], "data": [p.label for p in predictions]},
        "probability": {
            "name": "probability",
            "datatype": "FP64",
            "shape": [n],
            "data": [p.probability for p in predictions],
        },
        "positive_probability": {
            "name": "positive_probability",
            "datatype": "FP64",
            "shape": [n],
            "data": [p.positive_probability for p in predictions],
        },
    }
    wanted = [o.name for o in request.outputs] if request.outputs else list(OUTPUTS)
    body: dict[str, Any] = {
        "model_name": predictor.name,
        "model_version": predictor.version,
        "outputs": [tensors[name] for name in wanted],
    }
    if request.id is not None:
        body["id"] = request.id
    return body
