"""Redis-backed state: tasks, prompts and variants, assets, styles, projects (key names: config/keys.py)."""
