"""`magicore serve`: the methods behind an OpenAI-compatible HTTP endpoint (see docs/serve.md).

    schema.py         the request body (pydantic) and the response, chunk and error bodies
    errors.py         every failure as an OpenAI-style error with its HTTP status
    methods.py        model names to methods, per-request settings, chat models and graphs
    conversation.py   history kept by a LangGraph checkpointer (SQLite or Postgres)
    progress.py       progress events as short lines of reasoning text
    app.py            the Starlette application: routes, key, limits, streaming
"""
