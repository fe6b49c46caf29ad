"""``${NAME}`` in a site YAML's values: secrets from the environment.

A value may name environment variables (``password: ${MQTT_PASSWORD}``,
``url: mqtt://${BROKER_HOST}:1883``) so that secrets stay out of the file
(systemd ``LoadCredential``/``Environment=``, a container's env). A
variable that is not set is a problem naming it and its line, unless a
default is given (``${NAME:-default}``); ``$${`` is a literal ``${``. Keys
are never interpolated. Done on the YAML node tree before it is constructed,
so a whole plain value like ``${PORT}`` is typed as if written out (502 is a
number).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

import yaml

VARIABLE = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(
    root: yaml.Node, env: Mapping[str, str], resolver: yaml.resolver.BaseResolver
) -> Iterator[tuple[yaml.Node, tuple[str | int, ...], str]]:
    """Replace ``${NAME}`` in every scalar value under ``root`` in place;
    yield (node, path, message) for each variable that is not set."""
    yield from _walk(root, (), env, resolver)


def _walk(
    node: yaml.Node,
    path: tuple[str | int, ...],
    env: Mapping[str, str],
    resolver: yaml.resolver.BaseResolver,
) -> Iterator[tuple[yaml.Node, tuple[str | int, ...], str]]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _walk(value, (*path, str(key.value)), env, resolver)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _walk(item, (*path, i), env, resolver)
    elif isinstance(node, yaml.ScalarNode) and "${" in node.value:
        missing: list[str] = []

        def substitute(m: re.Match[str]) -> str:
            escaped, name, default = m.group(1), m.group(2), m.group(3)
            if escaped:
                return m.group(0)[1:]
            if name in env:
                return env[name]
            if default is not None:
                return default
            missing.append(name)
            return ""

        value = VARIABLE.sub(substitute, node.value)
        for name in missing:
            yield node, path, f"environment variable {name} is not set (${{{name}}})"
        if node.style is None:  # plain: typed as if the value were written out
            node.tag = resolver.resolve(yaml.ScalarNode, value, (True, False))
        node.value = value
