"""What an id may look like: every id reaches Redis keys and the asset store only through these patterns."""
from __future__ import annotations

NAME_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # ids clients choose: users, souls, variants, prompt keys
HEX_ID = r"^[0-9a-f]{32}$"  # ids the server makes: tasks, assets, projects
ADAPTER_ID = r"^[a-z0-9][a-z0-9_.-]{0,63}$"  # LoRA adapters: a file <id>.safetensors in a family's folder
