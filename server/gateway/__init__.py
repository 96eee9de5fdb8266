"""The HTTP/JSON gateway: grpc-gateway-style transcoding in front of the gRPC service.

Nothing here is hand-written per RPC. At start-up `routes.build_routes` reads the `google.api.http`
annotations of the services' descriptors; each HTTP request is matched against those templates,
transcoded into the request message (`transcode`), sent over a real gRPC channel (`app`), and the
response or status comes back as JSON in proto field names (`transcode`, `errors`). `openapi` derives
an OpenAPI 3 document from the same routes, and `runner` serves the ASGI app with uvicorn.

    routes.py     route table from the descriptors, path template parsing and matching
    transcode.py  HTTP request -> request message; message -> JSON
    errors.py     gRPC status -> HTTP status and the `{code, message, details}` body
    openapi.py    the OpenAPI 3 document of the routes
    app.py        the ASGI app (Starlette requests/responses) and the generic unary caller
    runner.py     uvicorn on a bound socket, in a thread, with a clean stop
"""
