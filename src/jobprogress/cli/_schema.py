"""``jobprogress schema``: print the wire's JSON Schema, for workers written in other languages."""

from __future__ import annotations

import json

import click

__all__ = ["schema", "schema_text"]


def schema_text() -> str:
    """The JSON Schema as docs/wire/v1.schema.json holds it: indented, ASCII, one final newline."""
    from jobprogress._wire_schema import wire_schema

    return json.dumps(wire_schema(), indent=2, ensure_ascii=True) + "\n"


@click.command()
def schema() -> None:
    """Print the JSON Schema (draft 2020-12) of the messages a worker posts to a collector.

    Heartbeat, ProgressUpdate and the batch, with every bound (ids, counts, timestamps, payload,
    batch size); the same file is docs/wire/v1.schema.json. See docs/wire.md.
    """
    click.echo(schema_text(), nl=False)
