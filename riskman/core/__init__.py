"""The leaf both sides share: clock, gateway models and ports, intents, locks, the rule
interface with the queries it may make, and the read-only views of engine state.

Nothing here imports the engine, the rules, the gateway client, storage or the screens.
"""
