"""Provider webhooks (SendGrid Event Webhook, Twilio status callbacks and inbound STOP) for the ledger.

``create_app()`` is a FastAPI app, mounted on Airflow's api-server by ``plugins/retain_plugin.py`` and
testable on its own with FastAPI's TestClient. See docs/webhooks.md.
"""

from retain.webhooks.app import URL_PREFIX, create_app
from retain.webhooks.errors import Rejected
from retain.webhooks.settings import WebhookSettings

__all__ = ["URL_PREFIX", "Rejected", "WebhookSettings", "create_app"]
