"""OpenAPI post-processing: document the one error shape on every operation."""

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "description": "Machine-readable reason, e.g. invalid, not_found, permission_denied."},
        "message": {"type": "string", "description": "What is wrong and what to do, for a person."},
        "field": {"type": "string", "nullable": True, "description": "The request field it concerns, if any."},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string", "nullable": True}},
                "required": ["code", "message", "field"],
            },
        },
    },
    "required": ["code", "message", "field", "errors"],
}
ERROR_STATUSES = {
    "400": "The request is invalid; the message says what to change.",
    "401": "Not logged in: send a session cookie or an `Authorization: Token ...` header.",
    "403": "Logged in, but your role does not allow this.",
    "404": "It does not exist, or you have no access to it.",
    "405": "This method is not allowed here.",
    "409": "It conflicts with the object's state (e.g. still running).",
    "413": "The upload is too large.",
    "415": "Unsupported content type for this operation.",
    "429": "Too many requests (e.g. failed logins); wait and try again.",
}


def add_error_responses(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            for status, description in ERROR_STATUSES.items():
                responses.setdefault(status, {"description": description, "content": reference})
    return result
