"""The YAML spec: load and merge (:mod:`.load`), structure (:mod:`.parse`), the per-task and
workflow settings (:mod:`.settings`), and render back to YAML (:mod:`.render`)."""
