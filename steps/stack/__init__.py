"""The Django/React/PostgreSQL/Nginx deployment (``aideploy deploy --plan stack``).

One module per step (check, work, verification), :mod:`.plan` builds the plan, :mod:`.releases`
switches and rolls back releases, :mod:`.lock` is the deploy lock on the target. See docs/stack.md.
"""
