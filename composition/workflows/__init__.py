"""Workflows: plain classes over deployment handles and the store; the runners execute them as tasks."""
