"""Campaigns and journeys: declarative files, audiences, assignment, arbitration and the run that hands
recipients to the dispatcher (docs/campaigns.md)."""
