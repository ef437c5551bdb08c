"""Running a deployment: connectors, runner, executor, state, CLI."""
