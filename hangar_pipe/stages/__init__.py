"""Built-in stages, used as `uses: NAME` in pipeline.yaml (see spec.BUILTIN_STAGES)."""
