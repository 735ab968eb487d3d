"""``retrain models``: the model registry's models and versions; promote or roll back, and publish the update."""

from __future__ import annotations

import argparse

from retrain.commands.arguments import Subcommands
from retrain.commands.outcomes import EXIT_OK
from retrain.registry import Registry
from retrain.settings import Settings


def add_models_commands(commands: Subcommands) -> None:
    models = commands.add_parser("models", help="the model registry")
    models_commands = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    models_commands.add_parser("list", help="models and the version in service").set_defaults(handler=cmd_models)
    show = models_commands.add_parser("show", help="a model's versions and their metadata")
    show.add_argument("model")
    show.add_argument("version", type=int, nargs="?")
    show.set_defaults(handler=cmd_models)
    promote = models_commands.add_parser("promote", help="put a version in service and publish the update")
    promote.add_argument("model")
    promote.add_argument("version", type=int)
    promote.set_defaults(handler=cmd_models)
    rollback = models_commands.add_parser("rollback", help="put the previous version back and publish the update")
    rollback.add_argument("model")
    rollback.set_defaults(handler=cmd_models)


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from retrain.registry import open_registry

    registry = open_registry(settings.registry)
    if args.models_command == "list":
        _list_models(registry)
    elif args.models_command == "show":
        _show_model(registry, args.model, args.version)
    else:
        _put_in_service(registry, args, settings)
    return EXIT_OK


def _list_models(registry: Registry) -> None:
    for model_id in registry.models():
        champion = registry.champion(model_id)
        versions = registry.versions(model_id)
        in_service = champion.version if champion else "-"
        print(f"{model_id:<32} versions {len(versions):>4}  in service {in_service}")


def _show_model(registry: Registry, model: str, version: int | None) -> None:
    """One version, or every version, of a model; a star marks the one in service."""
    infos = [registry.info(model, version)] if version else registry.versions(model)
    champion = registry.champion(model)
    for info in infos:
        mark = "*" if champion is not None and champion.version == info.version else " "
        metrics = ", ".join(f"{name}={value:.4f}" for name, value in sorted(info.metrics.items()))
        print(
            f"{mark} v{info.version:<4} {info.created_at.isoformat()} n={info.n_samples} {metrics} "
            f"sha256={info.sha256[:12]} trigger={info.trigger_event_id}"
        )


def _put_in_service(registry: Registry, args: argparse.Namespace, settings: Settings) -> None:
    """Promote ``args.version`` or roll back to the previous version, then publish the ModelUpdatedEvent."""
    from retrain.kafka import make_producer
    from retrain.producers import EventPublisher
    from retrain.schemas import ModelUpdatedEvent, UpdateOutcome

    previous = registry.champion(args.model)
    if args.models_command == "promote":
        info = registry.promote(args.model, args.version)
        outcome = UpdateOutcome.PROMOTED
    else:
        info = registry.rollback(args.model)
        outcome = UpdateOutcome.ROLLED_BACK
    update = ModelUpdatedEvent(
        model_id=info.model_id,
        version=info.version,
        previous_version=previous.version if previous else None,
        promoted=True,
        outcome=outcome,
        metrics=info.metrics,
        n_samples=info.n_samples,
        artifact_uri=info.artifact_uri,
        sha256=info.sha256,
        detail=f"{args.models_command} from the command line",
    )
    producer = make_producer(settings.kafka)
    try:
        EventPublisher(producer, settings.topics).publish_and_wait(update)
    finally:
        producer.close()
    print(f"{info.model_id}: version {info.version} in service ({outcome.value}); published {update.event_id}")
