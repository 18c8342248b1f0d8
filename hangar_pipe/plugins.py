"""What plugs into the core, one line each: dependency kinds (by tag) and built-in stages (by name).

The core (`hangar_pipe.core`) knows neither Hangar nor torch; this module, imported with the
package, tells it about them. Entries are "module:attribute" strings, imported on first use, so
registering costs nothing on the no-op path.
"""

from hangar_pipe.core import kinds, spec
from hangar_pipe.stages import BUILTIN, CHECKS, CODE, EXPLAIN, INCREMENTAL, INPUTS

kinds.register("hangar", "hangar_pipe.hangar.kinds:HangarDep")  # `- hangar: [columns]`
spec.BUILTIN_STAGES.update(BUILTIN)  # `uses: ingest | train | evaluate | map`
spec.BUILTIN_INPUTS.update(INPUTS)  # the files they read, named in `with:`
spec.BUILTIN_CODE.update(CODE)  # the user's modules they import, named in their params
spec.BUILTIN_CHECKS.update(CHECKS)  # checks of a stage as parsed (map: its columns are deps and outs)
spec.BUILTIN_INCREMENTAL.update(INCREMENTAL)  # those that update their outputs from a record of their own
spec.BUILTIN_EXPLAIN.update(EXPLAIN)  # those that word their reasons to run (map: samples changed)
