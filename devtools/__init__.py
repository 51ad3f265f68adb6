"""Development tooling, kept apart from the runtime (``services/`` and ``shared/`` never import it): the
``cme`` command, the local stack (Kafka from Maven Central, PostgreSQL) and the local run of the whole
pipeline, the demo feed and its API client, synthetic school years and sample events, the mail catcher,
and the event schemas and AsyncAPI document generated from the code (``cme schemas export`` / ``check``)."""
