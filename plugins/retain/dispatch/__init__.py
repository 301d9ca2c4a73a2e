"""Dispatch: pre-send checks, the ledger loop, rendering and channel calls (docs/dispatch.md)."""
