"""``rawguard serve``: a web page, an HTTP API and live streams over one detector (extra ``rawguard[serve]``).

- :mod:`.app`: the FastAPI application (routes, errors, request log);
- :mod:`.batching`: one model, one worker thread, requests batched together;
- :mod:`.streaming`: live windows, PCM decoding and the running decision (no web code: also used by
  ``rawguard stream``);
- :mod:`.live`: the ``/v1/stream`` WebSocket connection;
- :mod:`.uploads`: reading uploads within size and time limits;
- :mod:`.server`: uvicorn setup; :mod:`.settings`: the configuration.
"""
