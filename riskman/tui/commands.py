"""The command palette offers exactly what the footer offers: every binding active on the
current screen (gated ones only when allowed), so a key and a command never disagree."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.dom import DOMNode


class BindingCommands(Provider):
    def _commands(self) -> list[tuple[str, str, str, DOMNode]]:
        commands: list[tuple[str, str, str, DOMNode]] = []
        seen: set[str] = set()
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if not active.enabled or not binding.description or binding.system:
                continue
            if binding.action in seen:
                continue
            seen.add(binding.action)
            display = self.app.get_key_display(binding)
            title = f"{binding.description} ({display or key})"
            commands.append((title, binding.action, binding.tooltip, active.node))
        return commands

    def _run(self, action: str, node: DOMNode) -> None:
        self.app.call_later(self.app.run_action, action, node)

    async def discover(self) -> Hits:
        for title, action, help_text, node in self._commands():
            yield DiscoveryHit(title, partial(self._run, action, node), help=help_text or None)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, action, help_text, node in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(title),
                    partial(self._run, action, node),
                    help=help_text or None,
                )
