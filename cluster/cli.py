"""The `montage` command line."""
from __future__ import annotations

import argparse
import logging
import sys

from cluster import media_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="montage", description="Montage generative-media cluster")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="embedded Redis + local Ray + serve run (what `make run` does)")
    up.add_argument("config", nargs="?", default="serve_config.yaml")
    plan = commands.add_parser("plan", help="print the GPU placement plan of a serve config")
    plan.add_argument("config", nargs="?", default="config/serve/h200.yaml")
    plan.add_argument("--gpu", default="h200")
    commands.add_parser("status", help="deployments, replicas, GPU shares and Redis of the running cluster")
    keys = commands.add_parser("keys", help="API keys: create (prints the key last), list, revoke; webhook-secret: "
                                            "the server's webhook signing secret (auth off)")
    key_commands = keys.add_subparsers(dest="action", required=True)
    create = key_commands.add_parser("create")
    create.add_argument("--user", required=True)
    create.add_argument("--tier", default="free")
    key_commands.add_parser("list")
    key_commands.add_parser("webhook-secret")
    revoke = key_commands.add_parser("revoke")
    revoke.add_argument("key_id")
    media_cli.add_parsers(commands)
    args = parser.parse_args(argv)
    if args.command in media_cli.COMMANDS:
        return media_cli.main_media(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "up":
        from cluster.local import up as run_up

        return run_up(args.config)
    if args.command == "status":
        from cluster.status_cli import main_status

        return main_status()
    if args.command == "keys":
        from cluster.keys_cli import main_keys

        return main_keys(args.action, getattr(args, "user", None), getattr(args, "tier", None),
                         getattr(args, "key_id", None))
    from cluster.plan_cli import main_plan

    return main_plan(args.config, args.gpu)


if __name__ == "__main__":
    sys.exit(main())
