"""Prompt deduplication: reuse an earlier result when a new prompt is a near-duplicate of an earlier one."""
