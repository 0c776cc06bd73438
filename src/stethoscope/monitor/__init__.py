"""Monitoring: an event store of scores and alarms (`store`), the scoring core shared by the
HTTP service and other front-ends (`service`), and the FastAPI app (`app`, needs the ``serve``
extra: ``pip install 'stethoscope[serve]'``)."""
