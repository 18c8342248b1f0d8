"""The engine: pipeline.yaml, the graph, fingerprints, decisions, the runner, the lock and the caches.

Nothing here imports Hangar or torch: Hangar columns plug in as a dependency kind
(`hangar_pipe.hangar`), built-in stages by name (`hangar_pipe.stages`), both registered in
`hangar_pipe.plugins`.
"""
