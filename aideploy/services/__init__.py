"""Application services: deploy, resume, rollback, configuration and target resolution."""
