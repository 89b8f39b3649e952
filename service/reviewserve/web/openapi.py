"""The OpenAPI 3.1 document, built from the same pydantic models the codecs validate with.

Limits (MAX_REVIEWS, MAX_REVIEW_CHARS) come from the running settings, so the document says what
this server really accepts; the test suite fuzzes the server against it with schemathesis.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

import reviewserve
from reviewserve.model.text import NOT_BLANK_PATTERN
from reviewserve.settings import Settings
from reviewserve.web.codecs import InferRequest, ReviewList, SingleReview

REF = "#/components/schemas/{model}"


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF)
    components.update(schema.pop("$defs", {}))
    return schema


def _json(schema_ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}


def _error(description: str, schema_ref: str = "Error") -> dict[str, Any]:
    return {
        "description": description,
        "content": _json(schema_ref),
        "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
    }


def _ok(description: str, schema_ref: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": _json(schema_ref),
        "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    """Build the document for ``settings``."""
    text = {"type": "string", "minLength": 1, "maxLength": settings.max_review_chars, "pattern": NOT_BLANK_PATTERN}
    components: dict[str, Any] = {}
    single = _schema(SingleReview, components)
    single["properties"]["review"].update(text)
    many = _schema(ReviewList, components)
    many["properties"]["reviews"].update({"items": text, "maxItems": settings.max_reviews})
    infer = _schema(InferRequest, components)
    components["InferInput"]["properties"]["data"].update({"items": text, "maxItems": settings.max_reviews})
    components["InferInput"]["properties"]["shape"]["items"] = {"type": "integer", "minimum": 0}
    result_props = {
        "prediction": {"type": "string", "enum": ["negative", "positive"]},
        "probability": {"type": "number", "minimum": 0, "maximum": 1},
        "positive_probability": {"type": "number", "minimum": 0, "maximum": 1},
    }
    model_ref = {
        "type": "object",
        "required": ["name", "version"],
        "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
    }
    tensor = {
        "type": "object",
        "required": ["name", "datatype", "shape", "data"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string", "enum": ["BYTES", "FP64"]},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "data": {"type": "array", "items": {"type": ["string", "number"]}},
        },
    }
    tensor_meta = {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
    }
    components.update(
        {
            "SingleReview": single,
            "ReviewList": many,
            "PredictRequest": {
                "oneOf": [{"$ref": REF.format(model="SingleReview")}, {"$ref": REF.format(model="ReviewList")}]
            },
            "Prediction": {"type": "object", "required": list(result_props), "properties": result_props},
            "ModelRef": model_ref,
            "PredictResponse": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": [*result_props, "model"],
                        "properties": {**result_props, "model": {"$ref": REF.format(model="ModelRef")}},
                    },
                    {
                        "type": "object",
                        "required": ["predictions", "model"],
                        "properties": {
                            "predictions": {"type": "array", "items": {"$ref": REF.format(model="Prediction")}},
                            "model": {"$ref": REF.format(model="ModelRef")},
                        },
                    },
                ]
            },
            "InferRequest": infer,
            "InferResponse": {
                "type": "object",
                "required": ["model_name", "outputs"],
                "properties": {
                    "model_name": {"type": "string"},
                    "model_version": {"type": "string"},
                    "id": {"type": "string"},
                    "outputs": {"type": "array", "items": tensor},
                },
            },
            "ModelMetadata": {
                "type": "object",
                "required": ["name", "platform", "inputs", "outputs"],
                "properties": {
                    "name": {"type": "string"},
                    "versions": {"type": "array", "items": {"type": "string"}},
                    "platform": {"type": "string"},
                    "inputs": {"type": "array", "items": tensor_meta},
                    "outputs": {"type": "array", "items": tensor_meta},
                },
            },
            "ServerMetadata": {
                "type": "object",
                "required": ["name", "version", "extensions"],
                "properties": {
                    "name": {"type": "string"},
                    "version": {"type": "string"},
                    "extensions": {"type": "array", "items": {"type": "string"}},
                },
            },
            "Status": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
            "Live": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}},
            "Ready": {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}},
            "V2Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {"type": "string", "description": "Open Inference Protocol error message."},
                    "code": {"type": "string"},
                    "request_id": {"type": "string"},
                    "details": {},
                },
            },
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "request_id": {"type": "string"},
                            "details": {},
                        },
                    }
                },
            },
        }
    )
    name_param = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    version_param = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}

    def body_errors(schema_ref: str) -> dict[str, Any]:
        return {
            "400": _error(
                "The body is not valid JSON, or a V2 input is not named as the model metadata says.", schema_ref
            ),
            "413": _error("The body or a review is over the configured limit.", schema_ref),
            "415": _error("The Content-Type is not JSON, or the V2 binary extension was used.", schema_ref),
            "422": _error("Wrong shape or type: missing field, wrong type, empty text, too many reviews.", schema_ref),
            "503": _error("The model is not loaded.", schema_ref),
        }

    not_found = {"404": _error("No such model (name or version).", "V2Error")}

    def infer_op(summary: str, params: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "parameters": params,
                "requestBody": {"required": True, "content": _json("InferRequest")},
                "responses": {
                    "200": _ok("Outputs in input order.", "InferResponse"),
                    **body_errors("V2Error"),
                    **not_found,
                },
            }
        }

    def metadata_op(params: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "get": {
                "summary": "Model metadata",
                "parameters": params,
                "responses": {
                    "200": _ok("Model metadata.", "ModelMetadata"),
                    "503": _error("The model is not loaded.", "V2Error"),
                    **not_found,
                },
            }
        }

    def ready_op(params: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "get": {
                "summary": "Model readiness",
                "parameters": params,
                "responses": {
                    "200": _ok("Ready.", "Ready"),
                    "503": _ok("Not ready.", "Ready"),
                    **not_found,
                },
            }
        }

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "reviewserve",
            "version": reviewserve.__version__,
            "description": "Review sentiment predictions: the seed /predict API and the Open Inference Protocol V2.",
        },
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Score one review or a list of reviews",
                    "requestBody": {"required": True, "content": _json("PredictRequest")},
                    "responses": {
                        "200": _ok("Prediction(s), in request order.", "PredictResponse"),
                        **body_errors("Error"),
                    },
                }
            },
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _ok("The process serves.", "Status")}}},
            "/readyz": {
                "get": {
                    "summary": "Readiness",
                    "responses": {
                        "200": _ok("Model loaded and verified; not shutting down.", "Status"),
                        "503": _ok("Not ready (reason given).", "Status"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1 document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
            "/v2": {
                "get": {"summary": "Server metadata", "responses": {"200": _ok("Server metadata.", "ServerMetadata")}}
            },
            "/v2/health/live": {"get": {"summary": "V2 liveness", "responses": {"200": _ok("Live.", "Live")}}},
            "/v2/health/ready": {
                "get": {
                    "summary": "V2 readiness",
                    "responses": {"200": _ok("Ready.", "Ready"), "503": _ok("Not ready.", "Ready")},
                }
            },
            "/v2/models/{name}": metadata_op([name_param]),
            "/v2/models/{name}/versions/{version}": metadata_op([name_param, version_param]),
            "/v2/models/{name}/ready": ready_op([name_param]),
            "/v2/models/{name}/versions/{version}/ready": ready_op([name_param, version_param]),
            "/v2/models/{name}/infer": infer_op("V2 inference", [name_param]),
            "/v2/models/{name}/versions/{version}/infer": infer_op(
                "V2 inference (versioned)", [name_param, version_param]
            ),
        },
        "components": {
            "schemas": components,
            "headers": {
                "RequestId": {
                    "description": "The request id: the client's X-Request-ID when valid, else a new one.",
                    "schema": {"type": "string"},
                }
            },
        },
    }
